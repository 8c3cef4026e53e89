/* dense_codes_neon.h — the codes of our blocks of 64 (FORMAT.md §10) as 16 signed bytes at a time, NEON: shared by
 * the NEON integer dense products (qdense_neon.c, qdense_dotprod_neon.c). */
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

#endif
