// The errors a relink-redis call ends with. The engine's call policy decides
// the outcome; these classes only carry it to the caller.

/** A call that ended without a reply: `outcome` says what it may have done. */
export class RelinkError extends Error {
  constructor(message, { outcome, reason, kind, cause, command } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    /** `"not_applied"`, `"unknown"` or `"rejected"`. */
    this.outcome = outcome;
    /** Why the call ended (`"deadline_exceeded"`, `"queue_timeout"`, `"not_retry_safe"`, ...). */
    this.reason = reason;
    /** The engine's failure kind of the last attempt, if there was one. */
    this.kind = kind ?? null;
    /** The command, by name. */
    this.command = command;
  }
}

/** The command was certainly not applied (never sent, or refused): safe to try again. */
export class NotAppliedError extends RelinkError {}

/** The command was sent and no reply came: it may or may not have been applied. */
export class OutcomeUnknownError extends RelinkError {}

/** The options given to `createClient` are wrong; `field` names the one to fix. */
export class OptionsError extends TypeError {
  constructor(field, message) {
    super(`invalid option \`${field}\`: ${message}`);
    this.name = 'OptionsError';
    this.code = 'ERR_RELINK_INVALID_OPTION';
    this.field = field;
  }
}
