/* text_file.h — a whole file read into memory with plain stdio. */
#ifndef PBS2P_TEXT_FILE_H
#define PBS2P_TEXT_FILE_H

#include <stddef.h>

#define TEXT_FILE_MAX_BYTES ((size_t)1 << 28) /* 256 MiB: larger inputs are refused, not truncated */

/* *data (malloc'ed, NUL-terminated, caller frees) and *len = the file's bytes; 0 on success, otherwise -1 with a
 * one-line message (naming the path) in err[0..err_len): unreadable, too large, or not well-formed UTF-8. */
int text_file_read(const char *path, char **data, size_t *len, char *err, size_t err_len);

#endif
