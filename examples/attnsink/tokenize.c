#include "tokenize.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "files.h"

static void usage(FILE *f) {
  fprintf(f, "usage: attnsink tokenize DIR (--text FILE | --string S)\n"
             "Encodes the text with the tokenizer files of checkpoint DIR (tokenizer.json, or GPT-2's\n"
             "encoder.json + vocab.bpe) and prints the ids, whitespace-separated: the ids that\n"
             "`attnsink probe DIR --text FILE` cuts into windows (it adds BOS to each window itself).\n");
}

int tokenize_file(const char *cmd, const asink_tokenizer *tok, const char *path, int32_t **ids, size_t *n) {
  unsigned char *text;
  size_t len;
  if (read_whole_file(path, &text, &len)) {
    cli_error("%s: --text %s: cannot read: %s", cmd, path, read_error());
    return -1;
  }
  asink_status s = asink_tokenizer_encode(tok, (const char *)text, len, ids, n);
  free(text);
  if (s) {
    cli_error("%s: --text %s: %s", cmd, path, asink_last_error());
    return -1;
  }
  return 0;
}

/* --name VALUE or --name=VALUE at argv[*i]; NULL if argv[*i] is not --name. */
static const char *flag_value(int argc, char **argv, int *i, const char *name, int *missing) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n)) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n]) return NULL;
  if (*i + 1 >= argc) {
    *missing = 1;
    return NULL;
  }
  return argv[++*i];
}

int cmd_tokenize(int argc, char **argv) {
  const char *dir = NULL, *text = NULL, *string = NULL;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i], *v;
    int missing = 0;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return CLI_OK;
    }
    if ((v = flag_value(argc, argv, &i, "--text", &missing))) text = v;
    else if ((v = flag_value(argc, argv, &i, "--string", &missing))) string = v;
    else if (missing) {
      cli_error("tokenize: %s needs a value", a);
      return CLI_INPUT;
    } else if (a[0] == '-' && a[1]) {
      cli_error("tokenize: unknown flag '%s' (--text FILE or --string S; see attnsink tokenize --help)", a);
      return CLI_INPUT;
    } else if (dir) {
      cli_error("tokenize: one checkpoint directory only ('%s', then '%s')", dir, a);
      return CLI_INPUT;
    } else {
      dir = a;
    }
  }
  if (!dir) {
    cli_error(
        "tokenize: a checkpoint directory is required: attnsink tokenize DIR (--text FILE | --string S)");
    return CLI_INPUT;
  }
  if (!text == !string) {
    cli_error("tokenize: give exactly one of --text FILE and --string S");
    return CLI_INPUT;
  }
  asink_tokenizer *tok;
  if (asink_tokenizer_load(&tok, dir)) {
    cli_error("tokenize: %s", asink_last_error());
    return CLI_INPUT;
  }
  int32_t *ids = NULL;
  size_t n = 0;
  int rc = CLI_OK;
  if (text) {
    if (tokenize_file("tokenize", tok, text, &ids, &n)) rc = CLI_INPUT;
  } else if (asink_tokenizer_encode(tok, string, strlen(string), &ids, &n)) {
    cli_error("tokenize: --string: %s", asink_last_error());
    rc = CLI_INPUT;
  }
  if (!rc) {
    /* one line per 1000 ids keeps the lines of a long text short enough for line tools */
    for (size_t i = 0; i < n; i++) printf("%d%c", ids[i], (i + 1) % 1000 && i + 1 < n ? ' ' : '\n');
    if (fflush(stdout) || ferror(stdout)) {
      cli_error("tokenize: writing the ids: %s", strerror(errno));
      rc = CLI_FAIL;
    }
  }
  free(ids);
  asink_tokenizer_free(tok);
  return rc;
}
