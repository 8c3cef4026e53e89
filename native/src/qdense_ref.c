/* qdense_ref.c — the scalar reference of the integer dense products (internal.h: "integer dense products"): the exact
 * integer dot of each activation block, one float term per block, the terms summed in eight lanes. Compiled with
 * -ffp-contract=off: every variant rounds each multiply and add on its own, as this file does, and fuses exactly the
 * multiply-adds written as fmaf here (the two-level blocks'). */
#include "internal.h"

#include <math.h>

static inline float half_at(const uint8_t *p) { return pbs2p_half_to_float((uint16_t)(p[0] | p[1] << 8)); }

/* term_b of row p (its bytes) and the activation blocks of one token; not our two-level blocks (s16_row). */
static float term(int32_t type, const uint8_t *row, const pbs2p_q8_acts *A, int32_t b) {
    const int8_t *x = A->q + (size_t)b * PBS2P_ACT_BLOCK;
    int32_t I = 0;
    switch (type) {
    case PBS2P_GGML_Q8_0: {
        const uint8_t *p = row + (size_t)b * PBS2P_Q8_0_BYTES;
        for (int j = 0; j < 32; j++) I += (int8_t)p[2 + j] * x[j];
        return (half_at(p) * A->d[b]) * (float)I;
    }
    case PBS2P_GGML_Q4_0: {
        const uint8_t *p = row + (size_t)b * PBS2P_Q4_0_BYTES;
        for (int j = 0; j < 16; j++) I += ((p[2 + j] & 15) - 8) * x[j] + ((p[2 + j] >> 4) - 8) * x[j + 16];
        return (half_at(p) * A->d[b]) * (float)I;
    }
    default: { /* ours: activation block b is half b % 2 of weight block b / 2 */
        const int q3 = type == PBS2P_DENSE_Q3_G64;
        const uint8_t *p = row + pbs2p_our_block_at(type, (size_t)(b / 2));
        for (int j = 0; j < 32; j++) I += pbs2p_g64_code(p + 4, q3, 32 * (b % 2) + j) * x[j];
        return (half_at(p) * A->d[b]) * (float)I + half_at(p + 2) * A->s[b];
    }
    }
}

/* A row of our two-level blocks and one token (internal.h: "integer dense products"): activation block b is half
 * h = b % 2 of weight block b / 2, sub-blocks 2h and 2h + 1 with the integer dots I0, I1 and scale and min codes
 * sc0, mc0, sc1, mc1; T = sc0 I0 + sc1 I1 (exact); the row's D and M once, at the end. */
static float s16_row(int32_t type, const uint8_t *row, const pbs2p_q8_acts *A) {
    float accT[8] = {0}, accZ[8] = {0};
    for (int32_t b = 0; b < A->blocks; b++) {
        const int8_t *x = A->q + (size_t)b * PBS2P_ACT_BLOCK;
        const uint8_t *p = row + pbs2p_our_block_at(type, (size_t)(b / 2));
        const int h = b % 2;
        int32_t I0 = 0, I1 = 0;
        for (int j = 0; j < 16; j++) {
            I0 += pbs2p_s16_code(type, p, 32 * h + j) * x[j];
            I1 += pbs2p_s16_code(type, p, 32 * h + 16 + j) * x[16 + j];
        }
        const uint8_t s0 = p[2 * h], s1 = p[2 * h + 1];
        const int32_t T = (s0 & 15) * I0 + (s1 & 15) * I1;
        accT[b % 8] = fmaf(A->d[b], (float)T, accT[b % 8]);
        accZ[b % 8] = fmaf((float)(s1 >> 4), A->sh[b], fmaf((float)(s0 >> 4), A->sl[b], accZ[b % 8]));
    }
    return (half_at(row) * pbs2p_total8(accT)) - (half_at(row + 2) * pbs2p_total8(accZ));
}

void pbs2p_qdense_rows_ref(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                           int32_t row0, int32_t row1) {
    for (size_t t = 0; t < n_tokens; t++) {
        const pbs2p_q8_acts At = pbs2p_q8_acts_at(A, t);
        for (int32_t r = row0; r < row1; r++) {
            const uint8_t *row = W->data + (size_t)r * W->row_bytes;
            if (pbs2p_dense_s16(W->type)) {
                Y[t * ldy + (size_t)r] = s16_row(W->type, row, &At);
                continue;
            }
            float acc[8] = {0};
            for (int32_t b = 0; b < At.blocks; b++) acc[b % 8] += term(W->type, row, &At, b);
            Y[t * ldy + (size_t)r] = pbs2p_total8(acc);
        }
    }
}
