/* text_file.c — read a whole UTF-8 text file (prompt or corpus) with plain stdio, with an error message instead of a
 * crash. */
#include "text_file.h"
#include "utf8.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int text_file_read(const char *path, char **data, size_t *len, char *err, size_t err_len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_len, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    int rc = 0;
    for (;;) {
        if (!buf) {
            snprintf(err, err_len, "out of memory reading %s", path);
            rc = -1;
            break;
        }
        if (n == cap) {
            if (cap >= TEXT_FILE_MAX_BYTES) {
                snprintf(err, err_len, "%s is larger than %zu MiB", path, TEXT_FILE_MAX_BYTES >> 20);
                rc = -1;
                break;
            }
            cap *= 2;
            char *grown = realloc(buf, cap + 1);
            if (!grown) free(buf);
            buf = grown;
            continue;
        }
        errno = 0;
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                snprintf(err, err_len, "cannot read %s: %s", path, errno ? strerror(errno) : "read error");
                rc = -1;
            }
            break;
        }
    }
    fclose(f);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    const size_t bad = utf8_invalid_at((const unsigned char *)buf, n); /* as pbs2p-edge: text is UTF-8 */
    if (bad < n) {
        snprintf(err, err_len, "%s is not UTF-8 (byte %zu: 0x%02x)", path, bad, (unsigned)(unsigned char)buf[bad]);
        free(buf);
        return -1;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}
