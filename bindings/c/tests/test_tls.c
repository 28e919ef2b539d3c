/*
 * TLS from C: a redis-server on a TLS-only port with a private CA (made at
 * test time by the openssl CLI, nothing private checked in); the client
 * connects with `tls_ca_file`, and without it is refused at once as a TLS
 * misconfiguration. Skipped (exit 0, said on stderr) when openssl is missing.
 */
#define _GNU_SOURCE

#include "support.h"

static char dir[] = "/tmp/relink-c-tls-XXXXXX";

static void run(const char *command) {
  char line[1024];
  snprintf(line, sizeof line, "cd %s && %s >/dev/null 2>&1", dir, command);
  CHECK(system(line) == 0);
}

static void make_certs(void) {
  CHECK(mkdtemp(dir) != NULL);
  run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      "-keyout ca.key -out ca.pem -days 2 -subj '/CN=relink C test CA'");
  run("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
      "-keyout server.key -out server.csr -subj '/CN=127.0.0.1'");
  char ext[128];
  snprintf(ext, sizeof ext, "%s/san.ext", dir);
  FILE *f = fopen(ext, "w");
  CHECK(f != NULL);
  CHECK(fputs("subjectAltName=IP:127.0.0.1\n", f) >= 0);
  CHECK(fclose(f) == 0);
  run("openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
      "-out server.pem -days 2 -extfile san.ext");
}

static void remove_certs(void) {
  char line[256];
  snprintf(line, sizeof line, "rm -rf %s", dir);
  if (system(line) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

/* A redis-server listening for TLS only, on `port`. */
static pid_t start_tls_server(int port) {
  char port_text[16], cert[128], key[128], ca[128];
  snprintf(port_text, sizeof port_text, "%d", port);
  snprintf(cert, sizeof cert, "%s/server.pem", dir);
  snprintf(key, sizeof key, "%s/server.key", dir);
  snprintf(ca, sizeof ca, "%s/ca.pem", dir);
  char *const args[] = {"--port", "0", "--tls-port", port_text, "--bind", "127.0.0.1",
                        "--save", "", "--appendonly", "no", "--dir", dir,
                        "--tls-cert-file", cert, "--tls-key-file", key,
                        "--tls-ca-cert-file", ca, "--tls-auth-clients", "no", NULL};
  return start_server_with(port, args);
}

int main(void) {
  if (system("openssl version >/dev/null 2>&1") != 0) {
    fprintf(stderr, "test_tls: skipped: the openssl CLI is needed to make certificates\n");
    return 0;
  }
  make_certs();
  atexit(remove_certs);
  int port = free_port();
  pid_t server = start_tls_server(port);
  char url[64], ca[128];
  snprintf(url, sizeof url, "rediss://127.0.0.1:%d", port);
  snprintf(ca, sizeof ca, "%s/ca.pem", dir);

  relink_options options;
  CHECK_OK(relink_options_default(&options, sizeof options));
  options.wait_for_connection = 1;
  options.tls_ca_file = ca;
  relink_client *client = NULL;
  CHECK_OK(relink_client_connect(url, &options, &client, errp_));
  const char *set[] = {"SET", "tls:k", "over tls"};
  relink_reply *r = command(client, 3, set);
  CHECK(reply_is(r, RELINK_REPLY_STATUS, "OK"));
  relink_reply_free(r);
  const char *get[] = {"GET", "tls:k"};
  r = command(client, 2, get);
  CHECK(reply_is(r, RELINK_REPLY_STRING, "over tls"));
  relink_reply_free(r);
  relink_client_free(client);

  /* Without the CA: the system's roots do not know it, and retrying will not
   * help, so the connect fails at once as a misconfiguration. */
  options.tls_ca_file = NULL;
  relink_error *err = NULL;
  client = NULL;
  relink_code code = relink_client_connect(url, &options, &client, &err);
  CHECK(code == RELINK_MISCONFIGURED);
  CHECK(client == NULL);
  CHECK(strstr(relink_error_message(err), "UnknownIssuer") != NULL);
  relink_error_free(err);

  /* A client certificate without its key is named. */
  options.tls_cert_file = ca;
  err = NULL;
  code = relink_client_connect(url, &options, &client, &err);
  CHECK(code == RELINK_INVALID_CONFIG);
  CHECK(strstr(relink_error_message(err), "tls_key_file") != NULL);
  relink_error_free(err);

  stop_server(server);
  printf("test_tls: %d checks passed\n", checks_passed);
  return 0;
}
