/* gemv_example.c — smallest complete use of libpbs2p: describe a 2x8 packed 4:8 layer, prepare it, run gemv. */
#include <pbs2p.h>

#include <stdio.h>

int main(void) {
    /* Row 0 keeps columns 0-3 (bitmap 0x0F = code 0), row 1 keeps 4-7 (0xF0 = code 69); 7-bit codes. */
    const uint8_t mask[2] = {0x00, 69};
    const uint8_t signs[2] = {0x05, 0x0F};      /* row 0: + - + -, row 1: + + + + */
    const uint16_t alpha[2] = {0x3C00, 0x4000}; /* float16 1.0 and 2.0, one scale group per row */
    pbs2p_layer_desc desc = {
        .format_version = PBS2P_FORMAT_VERSION, .rows = 2, .cols = 8, .n = 4, .m = 8,
        .group_size = 8, .split = 1, .mask = mask, .signs = signs, .alpha = alpha,
    };
    pbs2p_layer *layer = NULL;
    pbs2p_status st = pbs2p_layer_prepare(&desc, &layer);
    if (st != PBS2P_OK) {
        fprintf(stderr, "prepare: %s: %s\n", pbs2p_status_str(st), pbs2p_last_error());
        return 1;
    }
    const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float y[2];
    st = pbs2p_gemv(layer, x, 8, y, 2, 1);
    pbs2p_layer_free(layer);
    if (st != PBS2P_OK) {
        fprintf(stderr, "gemv: %s: %s\n", pbs2p_status_str(st), pbs2p_last_error());
        return 1;
    }
    /* expected: y0 = 1 - 2 + 3 - 4 = -2, y1 = 2 * (5 + 6 + 7 + 8) = 52 */
    printf("kernel %s: y = [%g, %g]\n", pbs2p_kernel_name(), y[0], y[1]);
    return (y[0] == -2.0f && y[1] == 52.0f) ? 0 : 1;
}
