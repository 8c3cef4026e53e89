/* test_dense.c — ctest: every compiled variant's dense row dots (F16, Q8_0, Q4_0, q2_g64, q3_g64) against exact
 * decoding and a double-precision reference, the block layouts pinned by hand; one-hot activations read back each decoded weight bit for bit; batch invariance. */
#include "internal.h"
#define TEST_RNG_SEED 0x2545F4914F6CDD1Dull
#include "check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A random float16 with exponent in 2^-10 .. 2^-3 and a random sign, at p (little-endian). */
static void put_scale(uint8_t *p) {
    uint16_t h = (uint16_t)(((5 + rnd() % 8) << 10) | (rnd() & 0x3FF) | ((rnd() & 1) << 15));
    p[0] = (uint8_t)h; p[1] = (uint8_t)(h >> 8);
}

/* Random bytes of a (rows, cols) matrix of `type`: F16 of any finite value incl. subnormals and zeros of both
 * signs, or blocks (Q8_0, Q4_0, q2_g64, q3_g64) with random codes and random finite scales (and mins) of either sign. */
static uint8_t *make_matrix(int32_t type, int32_t rows, int32_t cols, size_t *row_bytes) {
    int32_t block;
    size_t bytes;
    if (!pbs2p_dense_block(type, &block, &bytes)) abort();
    *row_bytes = (size_t)cols / (size_t)block * bytes;
    uint8_t *p = malloc(*row_bytes * (size_t)rows + 1);
    for (size_t i = 0; i < *row_bytes * (size_t)rows; i++) p[i] = (uint8_t)rnd();
    if (type == PBS2P_GGML_F16) {
        for (size_t i = 0; i < (size_t)rows * cols; i++) /* exponent 31 (inf/nan) -> a finite exponent */
            if (((p[2 * i + 1] >> 2) & 0x1F) == 0x1F) p[2 * i + 1] &= (uint8_t)~0x40;
    } else {
        for (size_t b = 0; b < (size_t)rows * cols / (size_t)block; b++) {
            put_scale(p + b * bytes);
            if (type == PBS2P_DENSE_Q2_G64 || type == PBS2P_DENSE_Q3_G64) put_scale(p + b * bytes + 2); /* the min */
        }
    }
    return p;
}

/* One block of each type with known bytes decodes to hand-computed values: the layouts of FORMAT.md §10. */
static void check_layouts(void) {
    float out[64];
    uint8_t q4[18] = {0x00, 0x38}; /* d = 0.5 */
    q4[2] = 0x9F;                  /* q[0] = 15 -> 3.5, q[16] = 9 -> 0.5 */
    q4[17] = 0x08;                 /* q[15] = 8 -> 0, q[31] = 0 -> -4 */
    pbs2p_dense W = {q4, PBS2P_GGML_Q4_0, 18, 1, 32};
    pbs2p_dense_row(&W, 0, out);
    CHECK(out[0] == 3.5f && out[16] == 0.5f && out[15] == 0.0f && out[31] == -4.0f && out[1] == -4.0f,
          "Q4_0 layout: %g %g %g %g %g", out[0], out[16], out[15], out[31], out[1]);
    uint8_t q3[28] = {0x00, 0x34, 0x00, 0xBC}; /* d = 0.25, m = -1 */
    q3[4 + 0] = 0xE4;  /* q[0] = 0, q[16] = 1, q[32] = 2, q[48] = 3 (low bits) */
    q3[20 + 0] = 0x02; /* q[1] |= 4 */
    q3[20 + 7] = 0x80; /* q[63] |= 4 */
    W = (pbs2p_dense){q3, PBS2P_DENSE_Q3_G64, 28, 1, 64};
    pbs2p_dense_row(&W, 0, out);
    CHECK(out[0] == -1.0f && out[16] == -0.75f && out[32] == -0.5f && out[48] == -0.25f && out[1] == 0.0f &&
          out[63] == 0.0f, "q3_g64 layout: %g %g %g %g %g %g", out[0], out[16], out[32], out[48], out[1], out[63]);
    W.type = PBS2P_DENSE_Q2_G64; /* the same first 20 bytes read as q2_g64: no high bits */
    W.row_bytes = 20;
    pbs2p_dense_row(&W, 0, out);
    CHECK(out[48] == -0.25f && out[1] == -1.0f && out[63] == -1.0f, "q2_g64 layout: %g %g %g", out[48], out[1], out[63]);
}

static void check_variant(const char *name, int32_t type, int32_t rows, int32_t cols, size_t T) {
    size_t rb;
    uint8_t *data = make_matrix(type, rows, cols, &rb);
    pbs2p_dense W = {data, type, rb, rows, cols};
    pbs2p_kernels k;
    CHECK(pbs2p_kernel_select(name) == PBS2P_OK && pbs2p_kernel_current(&k), "select %s", name);
    float *X = malloc(sizeof(float) * T * cols), *Y = malloc(sizeof(float) * T * rows);
    float *Y1 = malloc(sizeof(float) * rows), *row = malloc(sizeof(float) * cols), *scratch = malloc(sizeof(float) * PBS2P_DENSE_ROWS * cols);
    for (size_t i = 0; i < T * (size_t)cols; i++) X[i] = rnd_unit();
    k.dense(&W, X, T, cols, Y, rows, 0, rows, scratch);
    double worst = 0;
    for (int32_t r = 0; r < rows; r++) {
        pbs2p_dense_row(&W, r, row);
        for (size_t t = 0; t < T; t++) {
            double exact = 0, mag = 0;
            for (int32_t j = 0; j < cols; j++) {
                exact += (double)X[t * cols + j] * row[j];
                mag += fabs((double)X[t * cols + j] * row[j]);
            }
            double err = fabs(Y[t * rows + r] - exact) / (mag + 1e-30);
            if (err > worst) worst = err;
        }
    }
    /* float32 sums of `cols` products: error <= cols * 2^-24 relative to sum |x w| (a loose bound, never reached) */
    CHECK(worst <= cols * 0x1p-24, "%s type %d %dx%d T=%zu: relative error %g", name, type, rows, cols, T, worst);
    for (size_t t = 0; t < T; t++) { /* one token alone == the same token in the batch, bit for bit */
        k.dense(&W, X + t * cols, 1, cols, Y1, rows, 0, rows, scratch);
        CHECK(memcmp(Y1, Y + t * rows, sizeof(float) * rows) == 0, "%s type %d %dx%d: token %zu differs alone",
              name, type, rows, cols, t);
    }
    /* one-hot activations read each decoded weight back exactly: the variant decodes as pbs2p_dense_row does */
    memset(X, 0, sizeof(float) * cols);
    for (int32_t j = 0; j < cols; j += 1 + cols / 9) {
        X[j] = 1.0f;
        k.dense(&W, X, 1, cols, Y1, rows, 0, rows, scratch);
        for (int32_t r = 0; r < rows; r++) {
            pbs2p_dense_row(&W, r, row);
            CHECK(memcmp(&Y1[r], &row[j], 4) == 0 || (Y1[r] == 0 && row[j] == 0), "%s type %d: w[%d,%d] %g != %g",
                  name, type, r, j, Y1[r], row[j]);
        }
        X[j] = 0.0f;
    }
    free(data); free(X); free(Y); free(Y1); free(row); free(scratch);
}

int main(void) {
    const char *names[8];
    size_t nv = pbs2p_kernel_variants(names, 8);
    static const int32_t f16_cols[] = {1, 7, 15, 16, 33, 576, 1000};
    static const int32_t q8_cols[] = {32, 64, 96, 576, 1024};
    static const int32_t g64_cols[] = {64, 128, 576, 1536};
    check_layouts();
    for (size_t v = 0; v < nv; v++) {
        if (!pbs2p_kernel_available(names[v])) continue;
        for (size_t c = 0; c < sizeof f16_cols / sizeof f16_cols[0]; c++)
            check_variant(names[v], PBS2P_GGML_F16, 1 + (int32_t)(c * 7) % 40, f16_cols[c], 1 + (c * 5) % 8);
        for (size_t c = 0; c < sizeof q8_cols / sizeof q8_cols[0]; c++)
            check_variant(names[v], PBS2P_GGML_Q8_0, 3 + (int32_t)(c * 5) % 30, q8_cols[c], 1 + (c * 5) % 8);
        for (size_t c = 0; c < sizeof q8_cols / sizeof q8_cols[0]; c++)
            check_variant(names[v], PBS2P_GGML_Q4_0, 1 + (int32_t)(c * 9) % 31, q8_cols[c], 1 + (c * 5) % 8);
        for (size_t c = 0; c < sizeof g64_cols / sizeof g64_cols[0]; c++) {
            check_variant(names[v], PBS2P_DENSE_Q2_G64, c ? 7 + (int32_t)c * 40 : 1, g64_cols[c], 1 + (c * 5) % 8);
            check_variant(names[v], PBS2P_DENSE_Q3_G64, c ? 129 - (int32_t)c * 30 : 1, g64_cols[c], 4 + c);
        }
        printf("dense rows %s: ok\n", names[v]);
    }
    pbs2p_kernel_select(NULL);
    if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
    printf("all dense checks passed\n");
    return 0;
}
