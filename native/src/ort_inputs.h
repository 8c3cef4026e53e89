/* ort_inputs.h — a PackedLinear node's attributes and input tensors, checked and turned into a pbs2p_layer_desc
 * (internal to the ONNX Runtime custom op, ort_op.c). */
#ifndef PBS2P_ORT_INPUTS_H
#define PBS2P_ORT_INPUTS_H

#include "ort_abi.h"
#include "pbs2p.h"

/* Positional inputs of ai.pbs2p::PackedLinear v1 (docs/ONNX.md §4); absent optional ones are "" or omitted. */
enum {
    PL_X, PL_MASK, PL_SIGNS, PL_SIGNS2, PL_SALIENT, PL_GROUPS, PL_ALPHA, PL_ALPHA2, PL_MU, PL_COL_SCALE, PL_BIAS,
    PL_N_INPUTS
};

#define PL_MAX_RANK 8 /* X / Y rank accepted: [..., cols] with at most 7 leading dimensions */

extern const char *const pbs2p_ort_input_names[PL_N_INPUTS];
extern const ONNXTensorElementDataType pbs2p_ort_input_types[PL_N_INPUTS];

/* One node: the OrtApi it was created with, its name (for messages) and its checked attributes. */
typedef struct pbs2p_ort_node {
    const OrtApi *api;
    char *name;               /* node name, owned ("" when ORT gives none) */
    pbs2p_layer_desc meta;    /* the attributes; stream pointers NULL */
    pbs2p_layer_sizes sizes;  /* stream sizes the attributes imply */
} pbs2p_ort_node;

/* An OrtStatus "PackedLinear node '<name>': <message>" (CreateStatus copies the text). */
OrtStatus *pbs2p_ort_fail(const pbs2p_ort_node *node, OrtErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Read the node name and the 10 int attributes, check them with pbs2p_layer_sizes_of. Free with
 * pbs2p_ort_node_free (also after a failure). */
OrtStatus *pbs2p_ort_node_init(pbs2p_ort_node *node, const OrtApi *api, const OrtKernelInfo *info);
void pbs2p_ort_node_free(pbs2p_ort_node *node);

/* Element type and shape of a tensor; more than `cap` dimensions is an error naming `what`. */
OrtStatus *pbs2p_ort_tensor_shape(const pbs2p_ort_node *node, const OrtValue *v, const char *what,
                                  ONNXTensorElementDataType *type, int64_t *dims, size_t cap, size_t *ndim);

/* Check inputs[PL_MASK..PL_BIAS] (NULL = absent) against the attributes: presence, element type and exact
 * shape of each. On success *desc = the attributes with the stream pointers into the tensors, *bias = the
 * bias data or NULL. Of the tensors' data only the bias is read here (it must be finite): pbs2p_layer_prepare
 * validates the streams and scales. */
OrtStatus *pbs2p_ort_bind_streams(const pbs2p_ort_node *node, const OrtValue *const inputs[PL_N_INPUTS],
                                  pbs2p_layer_desc *desc, const float **bias);

#endif /* PBS2P_ORT_INPUTS_H */
