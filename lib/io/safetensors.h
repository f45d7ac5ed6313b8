/* safetensors files (HF format) as an in-memory set of float32 tensors.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON mapping each tensor
 * name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
 * data area after the header) plus an optional "__metadata__" string->string map,
 * then the data. Reading accepts F32, F16, BF16 and F64 and converts to float32;
 * writing always stores F32. The parser trusts nothing in the file (docs/formats.md): every
 * size is overflow-checked and the layout must be exact, so a model loader can use
 * whatever it gets without further checks. */
#ifndef ASINK_IO_SAFETENSORS_H
#define ASINK_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "attnsink.h"

#define ASINK_ST_MAX_DIMS 8
/* Largest header accepted, as HF's own reader: larger is a corrupt or hostile file. */
#define ASINK_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef struct asink_tensors asink_tensors;

/* Creates an empty set into *out (freed with asink_st_free).
 * Errors: ASINK_ERR_ARG for NULL out, ASINK_ERR_NOMEM. */
asink_status asink_st_create(asink_tensors **out);

/* Frees a set and everything it owns; NULL is a no-op. */
void asink_st_free(asink_tensors *set);

/* Reads a safetensors file into a new set *out (tensors in file data order). Errors:
 * ASINK_ERR_IO if it cannot be opened/read, ASINK_ERR_FORMAT (message "path: what") for
 * malformed content, ASINK_ERR_NOMEM, ASINK_ERR_ARG for NULL arguments. */
asink_status asink_st_read(const char *path, asink_tensors **out);

/* Parses a whole safetensors file held in buf[0..len) into a new set *out; buf is not
 * kept. Same errors as asink_st_read, without ASINK_ERR_IO. *out is NULL on failure. */
asink_status asink_st_parse(const void *buf, size_t len, asink_tensors **out);

/* Writes the set as an F32 safetensors file, atomically (see atomic_file.h): header
 * with __metadata__ then tensors in byte-wise sorted name order, padded with spaces to a
 * multiple of 8, data contiguous in the same order. Errors: ASINK_ERR_ARG, ASINK_ERR_IO,
 * ASINK_ERR_NOMEM. */
asink_status asink_st_write(const asink_tensors *set, const char *path);

/* Number of tensors in the set (0 for NULL). */
int asink_st_count(const asink_tensors *set);

/* Index of the tensor called name, or -1 if there is none. */
int asink_st_find(const asink_tensors *set, const char *name);

/* Tensor i: any output pointer may be NULL. shape receives ndim values (a scalar has
 * ndim 0); data points into the set (valid until the set is freed or changed) and holds
 * the product of shape floats. ASINK_ERR_ARG if i is out of range. */
asink_status asink_st_get(const asink_tensors *set, int i, const char **name, int *ndim,
                          int64_t shape[ASINK_ST_MAX_DIMS], const float **data);

/* Element count of tensor i (-1 if i is out of range). */
int64_t asink_st_numel(const asink_tensors *set, int i);

/* Dtype tensor i had in the file it was read from ("F32", "F16", "BF16", "F64"), "F32"
 * for tensors added in memory, NULL if i is out of range. */
const char *asink_st_dtype(const asink_tensors *set, int i);

/* Adds a copy of a tensor (name and data copied; data NULL means zeros). Errors:
 * ASINK_ERR_ARG for a NULL/duplicate/"__metadata__"/non-UTF-8 name, ndim outside
 * 0..ASINK_ST_MAX_DIMS, a negative dim or a size that overflows; ASINK_ERR_NOMEM. */
asink_status asink_st_add(asink_tensors *set, const char *name, int ndim, const int64_t *shape,
                          const float *data);

/* A safetensors file mapped for reading, its header checked as asink_st_read checks it, each
 * tensor converted to float32 straight into the caller's buffer (asink_st_file_load), so
 * that loading a model keeps one copy of its weights. Errors of asink_st_open: those of
 * asink_st_read. */
typedef struct asink_st_file asink_st_file;
asink_status asink_st_open(const char *path, asink_st_file **out);
void asink_st_close(asink_st_file *f);
int asink_st_file_count(const asink_st_file *f);
/* Tensor i (data order): any output may be NULL; dtype is "F32", "F16", "BF16", "F64" or
 * one of the integer dtypes a file may hold beside them ("BOOL", "U8", "I64", ...).
 * ASINK_ERR_ARG if i is out of range. */
asink_status asink_st_file_info(const asink_st_file *f, int i, const char **name, int *ndim,
                                int64_t shape[ASINK_ST_MAX_DIMS], const char **dtype);
/* Converts tensor i into dst (its element count of floats) and drops the file's pages of it
 * from the process. ASINK_ERR_FORMAT for a tensor that is not a float dtype (its name in the
 * message), ASINK_ERR_ARG for a bad index. */
asink_status asink_st_file_load(const asink_st_file *f, int i, float *dst);
/* The same into bf16: a BF16 tensor's values copied as they are, other dtypes rounded to
 * the nearest bf16 (ties to even). */
asink_status asink_st_file_load_bf16(const asink_st_file *f, int i, uint16_t *dst);

/* Value stored under key in __metadata__, or NULL if absent. Owned by the set. */
const char *asink_st_meta_get(const asink_tensors *set, const char *key);

/* Sets (copies) key = value in __metadata__, replacing an earlier value. Errors:
 * ASINK_ERR_ARG for NULL or non-UTF-8 strings, ASINK_ERR_NOMEM. */
asink_status asink_st_meta_set(asink_tensors *set, const char *key, const char *value);

/* Number of __metadata__ entries, and entry i (insertion/file order; NULL-able outputs,
 * ASINK_ERR_ARG if i is out of range), to copy or list the whole map. */
int asink_st_meta_count(const asink_tensors *set);
asink_status asink_st_meta_at(const asink_tensors *set, int i, const char **key, const char **value);

#endif
