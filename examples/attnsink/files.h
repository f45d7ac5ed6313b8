/* File handling for the attnsink program. Every result file is written whole
 * (temporary file, fsync, rename) so that an interrupted or failed run never
 * leaves a half-written file where a finished one is expected. */
#ifndef ATTNSINK_CLI_FILES_H
#define ATTNSINK_CLI_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Reads a whole file. On failure returns -1 and prints nothing; errno says why. */
int read_whole_file(const char *path, unsigned char **data, size_t *n);

/* Writes data to path atomically. -1 with a message (cli_error) on failure,
 * leaving any old file in place and no temporary behind. */
int write_file_atomic(const char *path, const void *data, size_t n);

/* Appends one line (newline added) with a single write, so a line is either
 * there whole or not at all. -1 with a message on failure. */
int append_line(const char *path, const char *line);

/* JSON value to path atomically, indented (flags as json_dumps). */
int write_json_atomic(const char *path, const json_t *v, size_t flags);

/* Creates dir if missing. *created tells whether this call made it, so a
 * failing command can take back exactly what it made. -1 with a message. */
int make_dir(const char *dir, bool *created);

bool path_exists(const char *path);
bool is_dir(const char *path);

/* Removes the named files inside dir (missing ones are fine), then, if rmdir_too,
 * dir itself when that left it empty. Never recursive: it only touches what the
 * program itself writes. */
void remove_files_in(const char *dir, const char *const *names, bool rmdir_too);

/* An output file's directory must exist and be writable, so a bad path fails
 * before any work. -1 after an error line naming the flag. */
int check_output_path(const char *cmd, const char *flag, const char *path);

/* dir + "/" + name, malloc'd. */
char *path_join(const char *dir, const char *name);

/* A JSON number, or null for NaN/inf (JSON has no spelling for them). */
json_t *json_num(double v);

#endif
