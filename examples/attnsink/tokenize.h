/* attnsink tokenize: the ids a checkpoint's own tokenizer gives a text, the same ids
 * `attnsink probe --text` cuts into windows. */
#ifndef ATTNSINK_CLI_TOKENIZE_H
#define ATTNSINK_CLI_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#include <attnsink.h>

/* Encodes the bytes of the file at path with tok into *ids (malloc'd, *n of them).
 * Messages name "cmd: --text path". -1 after one error line. */
int tokenize_file(const char *cmd, const asink_tokenizer *tok, const char *path, int32_t **ids, size_t *n);

int cmd_tokenize(int argc, char **argv);

#endif
