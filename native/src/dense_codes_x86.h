/* dense_codes_x86.h — the codes of the 4-, 3- and 2-bit dense blocks (FORMAT.md §10) as 16 bytes at a time, with
 * SSSE3 byte operations: shared by the AVX2 and AVX-512 row decoders, which widen and scale them. */
#ifndef PBS2P_DENSE_CODES_X86_H
#define PBS2P_DENSE_CODES_X86_H

#include <immintrin.h>
#include <stdint.h>

/* Q4_0: codes 16h .. 16h + 15 of a block whose qs are at p (h = 0: low nibbles, 1: high nibbles). */
static inline __m128i q4_0_codes(const uint8_t *qs, int h) {
    const __m128i v = _mm_loadu_si128((const __m128i *)qs);
    return _mm_and_si128(h ? _mm_srli_epi16(v, 4) : v, _mm_set1_epi8(15));
}

/* Our blocks of 64: codes 16s .. 16s + 15 (s = 0..3); qh NULL for q2_g64. */
static inline __m128i g64_codes(const uint8_t *qs, const uint8_t *qh, int s) {
    const __m128i v = _mm_loadu_si128((const __m128i *)qs);
    __m128i q = _mm_and_si128(_mm_srli_epi16(v, 2 * s), _mm_set1_epi8(3)); /* 16-bit shifts: the mask drops spill */
    if (qh) { /* bit i of the 16 bits at qh + 2s, spread to byte i, as 4 */
        const __m128i bytes = _mm_shuffle_epi8(_mm_set1_epi16((short)(qh[2 * s] | qh[2 * s + 1] << 8)),
                                               _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
        const __m128i bit = _mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
        const __m128i set = _mm_cmpeq_epi8(_mm_and_si128(bytes, bit), bit);
        q = _mm_or_si128(q, _mm_and_si128(set, _mm_set1_epi8(4)));
    }
    return q;
}

#endif
