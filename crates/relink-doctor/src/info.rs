//! The `field:value` lines of `INFO` and `CLUSTER INFO`.

use std::collections::HashMap;

/// The fields of an `INFO` (or `CLUSTER INFO`) reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info(HashMap<String, String>);

impl Info {
    /// Reads `field:value` lines; section headers (`# Server`) and blank
    /// lines are skipped.
    pub fn parse(text: &str) -> Info {
        Info(
            text.lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .filter_map(|line| line.split_once(':'))
                .map(|(field, value)| (field.to_owned(), value.to_owned()))
                .collect(),
        )
    }

    /// A field's value.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// A field's value as a number.
    pub fn number(&self, field: &str) -> Option<f64> {
        self.get(field)?.parse().ok()
    }

    /// A field's value as a whole number.
    pub fn count(&self, field: &str) -> Option<u64> {
        self.get(field)?.parse().ok()
    }

    /// Is the field `1`?
    pub fn flag(&self, field: &str) -> bool {
        self.get(field) == Some("1")
    }

    /// The server's name and version: Valkey says `server_name:valkey` and
    /// `valkey_version`, Redis only `redis_version`.
    pub fn server(&self) -> Option<String> {
        let name = match self.get("server_name") {
            Some("valkey") => "Valkey",
            Some(other) if !other.is_empty() => other,
            _ => "Redis",
        };
        let version = self
            .get("valkey_version")
            .or_else(|| self.get("redis_version"))?;
        Some(format!("{name} {version}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_and_headers_skipped() {
        let info = Info::parse(
            "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n\r\n# Persistence\r\n\
             loading:1\r\nloading_loaded_perc:43.21\r\nexecutable:/usr/bin/redis-server\r\n",
        );
        assert_eq!(info.get("redis_mode"), Some("standalone"));
        assert!(info.flag("loading"));
        assert_eq!(info.number("loading_loaded_perc"), Some(43.21));
        assert_eq!(info.get("executable"), Some("/usr/bin/redis-server"));
        assert_eq!(info.server().as_deref(), Some("Redis 7.0.15"));
        let valkey = Info::parse("server_name:valkey\nredis_version:7.2.4\nvalkey_version:8.0.1\n");
        assert_eq!(valkey.server().as_deref(), Some("Valkey 8.0.1"));
        assert_eq!(Info::parse("").server(), None);
    }
}
