/* json_out.h — JSON values on a stdio stream: escaped strings (invalid UTF-8 as \ufffd), numbers, id arrays. */
#ifndef PBS2P_JSON_OUT_H
#define PBS2P_JSON_OUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* "s[0..len)" with quotes. Valid UTF-8 is copied; '"', '\\' and control characters U+0000..U+001F are escaped;
 * every byte that does not begin a well-formed UTF-8 sequence (RFC 3629: no overlongs, surrogates or code points
 * above U+10FFFF) becomes the escape \ufffd (U+FFFD REPLACEMENT CHARACTER), one per byte. */
void json_string(FILE *f, const char *s, size_t len);
/* A finite double with 17 significant digits (it reads back exactly); null for NaN or infinity. */
void json_number(FILE *f, double v);
/* [a, b, ...] */
void json_ids(FILE *f, const int32_t *ids, size_t n);

#endif
