/* File handling for the attnsink program. Every result file is written whole
 * (temporary file, fsync, rename) so that an interrupted or failed run never
 * leaves a half-written file where a finished one is expected. */
#ifndef ATTNSINK_CLI_FILES_H
#define ATTNSINK_CLI_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Reads a whole regular file, at most read_limit() bytes. On failure returns -1
 * and prints nothing; read_error() says why (errno is set too). */
int read_whole_file(const char *path, unsigned char **data, size_t *n);

/* The same with the limit max: a larger file is refused, not read. Devices, FIFOs
 * and sockets are always refused (they may never end: /dev/zero). */
int read_file_bounded(const char *path, size_t max, unsigned char **data, size_t *n);

/* Why the last read_* or open_regular call failed, as words that follow a path
 * ("is not a regular file ...", "No such file or directory"). */
const char *read_error(void);

/* Half the machine's memory: the most any file is read whole. */
size_t read_limit(void);

/* Opens path for reading if it is a regular file, filling *sb. -1 (read_error()
 * says why) for anything else; never blocks on a FIFO. */
struct stat;
int open_regular(const char *path, struct stat *sb);

/* Writes data to path atomically: a fresh temporary name beside it (created with
 * O_EXCL | O_NOFOLLOW, so a link planted there is never followed), fsync, rename,
 * fsync of the directory. -1 with a message (cli_error) on failure, leaving any old
 * file in place and no temporary behind. */
int write_file_atomic(const char *path, const void *data, size_t n);

/* Creates path (which must not exist; a link there is refused), writes data and
 * fsyncs it: for files in a directory nobody else knows yet. -1 with a message. */
int write_file_new(const char *path, const void *data, size_t n);

/* fsync and rename, each first passing the test kill point: with
 * ATTNSINK_TEST_KILL_AT=N (test-only) the program kills itself with SIGKILL just
 * before its N-th fsync or rename. durable_fsync ignores EINVAL/EROFS (a file
 * system that cannot sync). -1 with errno on failure, nothing printed. */
int durable_fsync(int fd);
int durable_rename(const char *from, const char *to);
/* durable_fsync of a directory, so the renames in it are on disk. */
int sync_dir(const char *dir);

/* JSON value to path atomically, indented (flags as json_dumps). */
int write_json_atomic(const char *path, const json_t *v, size_t flags);
/* The same through write_file_new. */
int write_json_new(const char *path, const json_t *v, size_t flags);

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

/* Six random letters and digits and a NUL: names no one else has chosen
 * (temporaries, step directories; not for secrets). */
void random_suffix(char out[7]);

/* dir + "/" + name, malloc'd. */
char *path_join(const char *dir, const char *name);

/* A JSON number, or null for NaN/inf (JSON has no spelling for them). */
json_t *json_num(double v);

#endif
