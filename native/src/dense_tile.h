/* dense_tile.h — the row loop of the SIMD dense products (head, grid-tier linears) over many tokens, shared by the
 * variants: PBS2P_DENSE_ROWS rows are decoded into scratch, then multiplied by the tokens in tiles of TILE_R rows x
 * TILE_T tokens, whose TILE_R * TILE_T dot products run side by side in registers. One dot at a time is bound by its
 * FMA latency (two running sums) and reads two floats per multiply-add; a tile keeps 2 * TILE_R * TILE_T sums in
 * flight and reads each loaded row vector TILE_T times, each token vector TILE_R times.
 *
 * Each dense_<variant>.c defines, before including it:
 *   TILE_R, TILE_T                               the tile (TILE_R divides PBS2P_DENSE_ROWS)
 *   decode_row(W, r, out)                        row r as float32, exactly pbs2p_dense_row's values
 *   dot(x, y, n)                                 one dot product in the variant's fixed order
 *   tile(w, K, x, ldx, y)                        y[i * TILE_T + t] = dot(x + t * ldx, w + i * K, K) for the tile,
 *                                                each sum formed in dot()'s order, bit for bit
 * so a token's result is the same alone or in a batch, at any tile position. */
#ifndef PBS2P_DENSE_TILE_H
#define PBS2P_DENSE_TILE_H

static void dense_rows(const pbs2p_dense *W, const float *X, size_t n_tokens, size_t ldx, float *Y, size_t ldy,
                       int32_t row0, int32_t row1, float *scratch) {
    const size_t K = (size_t)W->cols;
    for (int32_t r = row0; r < row1; r += PBS2P_DENSE_ROWS) {
        const int32_t nr = row1 - r < PBS2P_DENSE_ROWS ? row1 - r : PBS2P_DENSE_ROWS;
        for (int32_t i = 0; i < nr; i++) decode_row(W, r + i, scratch + (size_t)i * K);
        int32_t i = 0;
        for (; i + TILE_R <= nr; i += TILE_R) {
            const float *w = scratch + (size_t)i * K;
            size_t t = 0;
            for (; t + TILE_T <= n_tokens; t += TILE_T) {
                float y[TILE_R * TILE_T];
                tile(w, (int32_t)K, X + t * ldx, ldx, y);
                for (int a = 0; a < TILE_R; a++)
                    for (int b = 0; b < TILE_T; b++) Y[(t + (size_t)b) * ldy + (size_t)(r + i + a)] = y[a * TILE_T + b];
            }
            for (; t < n_tokens; t++)
                for (int a = 0; a < TILE_R; a++)
                    Y[t * ldy + (size_t)(r + i + a)] = dot(X + t * ldx, w + (size_t)a * K, (int32_t)K);
        }
        for (; i < nr; i++)
            for (size_t t = 0; t < n_tokens; t++)
                Y[t * ldy + (size_t)(r + i)] = dot(X + t * ldx, scratch + (size_t)i * K, (int32_t)K);
    }
}

#endif
