/* json_out.c — JSON strings, numbers and id arrays for pbs2p-run's --json output. */
#include "json_out.h"

#include <math.h>

/* Bytes of the well-formed UTF-8 sequence at s[0..n) (RFC 3629 table 3-7), or 0 when s[0] does not begin one. */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
    const unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;           /* no overlongs */
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) len = 3, hi = 0x9F;           /* no surrogates U+D800..U+DFFF */
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;           /* no overlongs */
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;           /* nothing above U+10FFFF */
    else return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

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
