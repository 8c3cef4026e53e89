/* json_out.c — JSON strings, numbers and id arrays for pbs2p-run's --json output. */
#include "json_out.h"
#include "utf8.h"

#include <math.h>

void json_string(FILE *f, const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        const unsigned char c = s[i];
        size_t k = utf8_sequence(s + i, len - i);
        if (k == 0) {
            fputs("\\ufffd", f);
            i++;
        } else if (k > 1) {
            fwrite(s + i, 1, k, f);
            i += k;
        } else {
            switch (c) {
            case '"': fputs("\\\"", f); break;
            case '\\': fputs("\\\\", f); break;
            case '\b': fputs("\\b", f); break;
            case '\f': fputs("\\f", f); break;
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            default:
                if (c < 0x20) fprintf(f, "\\u%04x", (unsigned)c);
                else fputc(c, f);
            }
            i++;
        }
    }
    fputc('"', f);
}

void json_number(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.17g", v);
    else fputs("null", f);
}

void json_ids(FILE *f, const int32_t *ids, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n; i++) fprintf(f, i ? ", %ld" : "%ld", (long)ids[i]);
    fputc(']', f);
}
