/* dense_codes_neon.h — the codes of our blocks of 64 and two-level blocks (FORMAT.md §10) as 16 signed bytes at a time,
 * NEON: shared by the NEON integer dense products (qdense_neon.c, qdense_dotprod_neon.c), which include internal.h
 * first. */
#ifndef PBS2P_DENSE_CODES_NEON_H
#define PBS2P_DENSE_CODES_NEON_H

#include <arm_neon.h>
#include <stdint.h>

/* Codes 16s .. 16s + 15 of one of our blocks of 64; qh NULL for q2_g64. */
static inline int8x16_t g64_codes(const uint8_t *qs, const uint8_t *qh, int s) {
    uint8x16_t q = vandq_u8(vshlq_u8(vld1q_u8(qs), vdupq_n_s8((int8_t)(-2 * s))), vdupq_n_u8(3));
    if (qh) {
        static const uint8_t bits[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
        const uint8x16_t bytes = vcombine_u8(vdup_n_u8(qh[2 * s]), vdup_n_u8(qh[2 * s + 1]));
        q = vorrq_u8(q, vandq_u8(vtstq_u8(bytes, vld1q_u8(bits)), vdupq_n_u8(4)));
    }
    return vreinterpretq_s8_u8(q);
}

/* Codes 16s .. 16s + 15 (s = 0..3) of one of our two-level blocks of 64 at p (its sc[4] first; FORMAT.md §10). */
static inline int8x16_t s16_codes(int32_t type, const uint8_t *p, int s) {
    if (type == PBS2P_DENSE_Q4_S16) {
        const uint8x16_t qs = vld1q_u8(p + 4 + 16 * (s / 2));
        return vreinterpretq_s8_u8(s % 2 ? vshrq_n_u8(qs, 4) : vandq_u8(qs, vdupq_n_u8(15)));
    }
    return g64_codes(p + 4, type == PBS2P_DENSE_Q3_S16 ? p + 20 : NULL, s);
}

#endif
