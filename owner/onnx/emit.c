/* ONNX import: emitting device nodes into the te_model. */
#include "onnx_internal.h"

#include <stdint.h>
#include <string.h>

void te_imp_node_init(te_node *t, te_op op, const char *name)
{
    memset(t, 0, sizeof *t);
    t->op = op;
    t->name = (char *)name;
    t->layer = -1;
    t->dilation[0] = t->dilation[1] = 1;
    t->stride[0] = t->stride[1] = 1;
}

/* Add node t with inputs ids[0..n_in) and a new runtime output value. */
te_status te_imp_emit(imp *I, te_node *t, int *ids, int n_in, const char *oname, const te_shape *os, ival **out)
{
    ival *o = NULL;
    char sb[128];
    int64_t ne = te_imp_numel(os);
    if (ne <= 0 || ne > MAX_NUMEL) {
        te_imp_shape_str(os, sb, sizeof sb);
        return te_errf(I->err, TE_ESHAPE, "%s node '%s': invalid output shape %s", te_op_name(t->op),
                       t->name ? t->name : "?", sb);
    }
    te_status st = te_imp_new_rt(I, oname, os, &o);
    if (st != TE_OK)
        return st;
    t->in = ids;
    t->n_in = n_in;
    t->out = o->id;
    if (te_model_add_node(I->m, t) < 0)
        return te_imp_nomem(I);
    if (out)
        *out = o;
    return TE_OK;
}

te_status te_imp_emit1(imp *I, te_node *t, int in_id, const char *oname, const te_shape *os, ival **out)
{
    int ids[1] = {in_id};
    return te_imp_emit(I, t, ids, 1, oname, os, out);
}

/* Index of the node producing value id (or -1). */
int te_imp_producer(imp *I, int id)
{
    for (int k = I->m->n_nodes - 1; k >= 0; k--)
        if (I->m->nodes[k].out == id)
            return k;
    return -1;
}
