#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "errors.h"

/* ------------------------------------------------------------ bounded reads */

static char g_read_why[256];

const char *read_error(void) { return g_read_why; }

static int read_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int read_fail(int err, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_read_why, sizeof g_read_why, fmt, ap);
  va_end(ap);
  errno = err;
  return -1;
}

int open_regular(const char *path, struct stat *sb) {
  /* O_NONBLOCK: opening a FIFO must not wait for a writer before it can be refused */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return read_fail(errno, "%s", strerror(errno));
  if (fstat(fd, sb) != 0) {
    int e = errno;
    close(fd);
    return read_fail(e, "%s", strerror(e));
  }
  if (!S_ISREG(sb->st_mode)) {
    close(fd);
    if (S_ISDIR(sb->st_mode)) return read_fail(EISDIR, "is a directory");
    return read_fail(EINVAL, "is not a regular file (a device, FIFO or socket has no size to check); "
                             "save the data to a file first");
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

size_t read_limit(void) {
  /* a file read whole must fit in memory with room to spare for the model */
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return (size_t)1 << 32;
  return (size_t)pages * (size_t)page / 2;
}

static void size_text(char *buf, size_t n, uint64_t bytes) {
  if (bytes >= (1ull << 30)) snprintf(buf, n, "%.1f GiB", bytes / (double)(1ull << 30));
  else if (bytes >= (1ull << 20)) snprintf(buf, n, "%.1f MiB", bytes / (double)(1ull << 20));
  else snprintf(buf, n, "%" PRIu64 " bytes", bytes);
}

int read_file_bounded(const char *path, size_t max, unsigned char **data, size_t *n) {
  struct stat sb;
  int fd = open_regular(path, &sb);
  if (fd < 0) return -1;
  if ((uint64_t)sb.st_size > (uint64_t)max) {
    close(fd);
    char have[32], lim[32];
    size_text(have, sizeof have, (uint64_t)sb.st_size);
    size_text(lim, sizeof lim, max);
    return read_fail(EFBIG, "is %s, more than the %s this file may hold", have, lim);
  }
  /* the size seen now is what is read: a file that grows meanwhile does not grow the buffer */
  size_t want = (size_t)sb.st_size, len = 0;
  unsigned char *buf = xmalloc(want + 1);
  while (len < want) {
    ssize_t r = read(fd, buf + len, want - len);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      free(buf);
      close(fd);
      return read_fail(e, "%s", strerror(e));
    }
    if (r == 0) break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = 0; /* text callers may treat it as a C string */
  *data = buf;
  *n = len;
  return 0;
}

int read_whole_file(const char *path, unsigned char **data, size_t *n) {
  return read_file_bounded(path, read_limit(), data, n);
}

/* ------------------------------------------------------------ durable writes */

/* ATTNSINK_TEST_KILL_AT=N: the program kills itself (SIGKILL) just before its N-th
 * fsync or rename, so a test can stop a save at every step that matters. */
static void test_kill_point(void) {
  static long at = -2, count;
  if (at == -2) {
    const char *e = getenv("ATTNSINK_TEST_KILL_AT");
    at = e && *e ? atol(e) : -1;
  }
  if (at > 0 && ++count == at) raise(SIGKILL);
}

int durable_fsync(int fd) {
  test_kill_point();
  /* a file system that cannot sync a directory has nothing to sync there */
  if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) return -1;
  return 0;
}

int durable_rename(const char *from, const char *to) {
  test_kill_point();
  return rename(from, to);
}

int sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int rc = durable_fsync(fd);
  int e = errno;
  close(fd);
  errno = e;
  return rc;
}

static int write_all(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = EIO;
      return -1;
    }
    p += w, n -= (size_t)w;
  }
  return 0;
}

void random_suffix(char out[7]) {
  static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  static uint64_t x;
  if (!x) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 20 ^ (uint64_t)getpid() << 40;
  }
  for (int i = 0; i < 6; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    out[i] = letters[(x >> 33) % (sizeof letters - 1)];
  }
  out[6] = 0;
}

/* A fresh name beside path ("path.tmp.XXXXXX"), created with O_EXCL | O_NOFOLLOW:
 * a link or file planted there is never written through, and a taken name is
 * retried with another. */
static int create_temp(const char *path, char **tmp_out) {
  for (int attempt = 0; attempt < 100; attempt++) {
    char suffix[7];
    random_suffix(suffix);
    char *tmp = xasprintf("%s.tmp.%s", path, suffix);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd >= 0) {
      *tmp_out = tmp;
      return fd;
    }
    free(tmp);
    if (errno != EEXIST) return -1;
  }
  errno = EEXIST;
  return -1;
}

static char *parent_dir(const char *path) {
  char *d = xstrdup(path), *slash = strrchr(d, '/');
  if (!slash) {
    free(d);
    return xstrdup(".");
  }
  if (slash == d) slash[1] = 0;
  else *slash = 0;
  return d;
}

int write_file_atomic(const char *path, const void *data, size_t n) {
  char *tmp = NULL;
  int fd = create_temp(path, &tmp);
  if (fd < 0) {
    cli_error("%s: cannot write: %s", path, strerror(errno));
    return -1;
  }
  int err = 0;
  if (write_all(fd, data, n) != 0 || durable_fsync(fd) != 0) err = errno;
  if (close(fd) != 0 && !err) err = errno;
  if (!err && durable_rename(tmp, path) != 0) err = errno;
  if (err) {
    unlink(tmp);
    cli_error("%s: cannot write: %s", path, strerror(err));
  } else {
    /* the rename is only durable once the directory entry is on disk */
    char *dir = parent_dir(path);
    if (sync_dir(dir) != 0) {
      err = errno;
      cli_error("%s: written, but its directory %s cannot be synced: %s", path, dir, strerror(err));
    }
    free(dir);
  }
  free(tmp);
  return err ? -1 : 0;
}

int write_file_new(const char *path, const void *data, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  int err = fd < 0 ? errno : 0;
  if (!err && (write_all(fd, data, n) != 0 || durable_fsync(fd) != 0)) err = errno;
  if (fd >= 0 && close(fd) != 0 && !err) err = errno;
  if (err) cli_error("%s: cannot write: %s", path, strerror(err));
  return err ? -1 : 0;
}

/* The JSON text of v with a final newline, malloc'd; NULL after an error line. */
static char *json_line(const char *path, const json_t *v, size_t flags, size_t *n) {
  char *text = json_dumps(v, flags);
  if (!text) {
    cli_error("%s: cannot format JSON", path);
    return NULL;
  }
  *n = strlen(text);
  char *withnl = xmalloc(*n + 2);
  memcpy(withnl, text, *n);
  withnl[(*n)++] = '\n';
  free(text);
  return withnl;
}

static int write_json_by(int (*write)(const char *, const void *, size_t), const char *path, const json_t *v,
                         size_t flags) {
  size_t n;
  char *text = json_line(path, v, flags, &n);
  int r = text ? write(path, text, n) : -1;
  free(text);
  return r;
}

int write_json_atomic(const char *path, const json_t *v, size_t flags) {
  return write_json_by(write_file_atomic, path, v, flags);
}

int write_json_new(const char *path, const json_t *v, size_t flags) {
  return write_json_by(write_file_new, path, v, flags);
}

int make_dir(const char *dir, bool *created) {
  *created = false;
  if (mkdir(dir, 0777) == 0) {
    *created = true;
    return 0;
  }
  if (errno == EEXIST && is_dir(dir)) return 0;
  cli_error("%s: cannot create directory: %s", dir,
            errno == EEXIST ? "a file of that name exists" : strerror(errno));
  return -1;
}

bool path_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

bool is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

void remove_files_in(const char *dir, const char *const *names, bool rmdir_too) {
  for (; *names; names++) {
    char *p = path_join(dir, *names);
    unlink(p);
    free(p);
  }
  if (rmdir_too) rmdir(dir); /* fails harmlessly when something else is still there */
}

int check_output_path(const char *cmd, const char *flag, const char *path) {
  if (!path) return 0;
  char *dir = xstrdup(path), *slash = strrchr(dir, '/');
  const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
  bool ok = is_dir(d) && access(d, W_OK) == 0 && !is_dir(path);
  if (!ok)
    cli_error("%s: --%s %s: %s", cmd, flag, path,
              is_dir(path) ? "is a directory" : "its directory does not exist or is not writable");
  free(dir);
  return ok ? 0 : -1;
}

char *path_join(const char *dir, const char *name) { return xasprintf("%s/%s", dir, name); }

json_t *json_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }
