/* utf8.h — well-formed UTF-8 (RFC 3629), shared by the text files pbs2p-run reads and the JSON it writes. */
#ifndef PBS2P_CLI_UTF8_H
#define PBS2P_CLI_UTF8_H

#include <stddef.h>

/* Bytes of the well-formed UTF-8 sequence at s[0..n) (RFC 3629 table 3-7), or 0 when s[0] does not begin one. */
size_t utf8_sequence(const unsigned char *s, size_t n);

/* Offset of the first byte of s[0..n) that does not begin a well-formed sequence, or n when all of it is UTF-8. */
size_t utf8_invalid_at(const unsigned char *s, size_t n);

#endif
