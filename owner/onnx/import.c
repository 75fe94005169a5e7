/* ONNX import: the entry points (onnx_import.h): the opset, initializers and
 * graph input, then every node through the op table. */
#include "onnx_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_bundle.h"
#include "te_dyn.h"

#define OPSET_MIN 7

#define OPSET_MAX 21
#define MAX_OUTPUTS 64

int te_parse_input_shape(const char *text, te_input_shape *out)
{
    memset(out, 0, sizeof *out);
    const char *colon = text ? strrchr(text, ':') : NULL;
    if (!colon || colon == text || (size_t)(colon - text) >= sizeof out->name)
        return -1;
    memcpy(out->name, text, (size_t)(colon - text));
    const char *p = colon + 1;
    while (*p) {
        char *end;
        long long d = strtoll(p, &end, 10);
        if (end == p || d < 1 || d > MAX_NUMEL || out->shape.ndim == TE_MAX_DIMS)
            return -1;
        out->shape.d[out->shape.ndim++] = d;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return out->shape.ndim > 0 ? 0 : -1;
}

static te_status graph_input(imp *I)
{
    const Onnx__GraphProto *g = I->g;
    const Onnx__ValueInfoProto *in = NULL;
    int count = 0;
    char sb[128], hb[128];
    for (size_t k = 0; k < g->n_input; k++) {
        if (!g->input[k]->name || te_imp_lookup(I, g->input[k]->name))
            continue; /* an initializer listed as an input */
        in = g->input[k];
        count++;
    }
    if (count != 1)
        return te_errf(I->err, TE_EUNSUPPORTED, "the model must have exactly one (non-initializer) input, it has %d",
                       count);
    const Onnx__TypeProto *tp = in->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type ||
        !tp->tensor_type->shape)
        return te_errf(I->err, TE_EUNSUPPORTED, "model input '%s' has no tensor type with a shape", in->name);
    if (tp->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return te_errf(I->err, TE_EUNSUPPORTED, "model input '%s' must be float32", in->name);
    const Onnx__TensorShapeProto *sp = tp->tensor_type->shape;
    if (sp->n_dim < 1 || sp->n_dim > TE_MAX_DIMS)
        return te_errf(I->err, TE_EUNSUPPORTED, "model input '%s' has rank %zu", in->name, sp->n_dim);
    const te_import_opts *o = I->opts;
    const te_shape *given = NULL;
    for (int k = 0; k < o->n_shapes; k++) {
        if (strcmp(o->shapes[k].name, in->name) == 0)
            given = &o->shapes[k].shape;
        else
            return te_errf(I->err, TE_EINVAL, "--input-shape names '%s', but the model's input is '%s'",
                           o->shapes[k].name, in->name);
    }
    if (given && given->ndim != (int)sp->n_dim)
        return te_errf(I->err, TE_ESHAPE, "--input-shape %s: %d dimensions, the model input '%s' has %zu", in->name,
                       given->ndim, in->name, sp->n_dim);
    /* the hint's per-sample shape at the input's rank */
    te_shape hint = {0};
    int have_hint = 0;
    if (o->hint) {
        const te_shape *h = o->hint;
        int r = (int)sp->n_dim;
        if (h->ndim == r + 1 && o->hint_stacked) {
            hint.ndim = r;
            memcpy(hint.d, h->d + 1, (size_t)r * sizeof hint.d[0]);
            have_hint = 1;
        } else if (h->ndim == r) {
            hint = *h;
            if (o->hint_stacked)
                hint.d[0] = -1; /* S*N samples: the batch stays open */
            have_hint = 1;
        } else if (h->ndim == r - 1 && !o->hint_stacked) {
            hint.ndim = r; /* one sample without its batch axis */
            hint.d[0] = 1;
            memcpy(hint.d + 1, h->d, (size_t)h->ndim * sizeof hint.d[0]);
            have_hint = 1;
        }
    }
    te_shape s = {.ndim = (int)sp->n_dim};
    for (size_t k = 0; k < sp->n_dim; k++) {
        const Onnx__TensorShapeProto__Dimension *d = sp->dim[k];
        int fixed = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0;
        const char *sym = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ? d->dim_param : "";
        if (given) {
            if (fixed && given->d[k] != d->dim_value)
                return te_errf(I->err, TE_ESHAPE, "--input-shape %s:%s: dimension %zu is fixed to %lld in the model",
                               in->name, te_shape_str(given, sb, sizeof sb) , k, (long long)d->dim_value);
            s.d[k] = given->d[k];
        } else if (fixed) {
            s.d[k] = d->dim_value;
        } else if (have_hint && hint.d[k] > 0) {
            s.d[k] = hint.d[k];
        } else if (k == 0) {
            s.d[k] = 1; /* dynamic batch: one sample */
        } else {
            if (o->hint)
                return te_errf(I->err, TE_ESHAPE,
                               "model input '%s': dimension %zu ('%s') is not fixed and the tensor of shape %s "
                               "does not fit the input's rank %zu; give --input-shape %s:D0,D1,...",
                               in->name, k, sym, te_shape_str(o->hint, hb, sizeof hb), sp->n_dim, in->name);
            return te_errf(I->err, TE_EUNSUPPORTED,
                           "model input '%s': dimension %zu ('%s') is not fixed; give --input-shape %s:D0,D1,... "
                           "(or calibration data of that shape)",
                           in->name, k, sym, in->name);
        }
    }
    if (te_imp_numel(&s) > MAX_NUMEL || te_imp_numel(&s) < 1)
        return te_errf(I->err, TE_EUNSUPPORTED, "model input '%s' is too large", in->name);
    ival *v;
    te_status st = te_imp_new_rt(I, in->name, &s, &v);
    if (st == TE_OK)
        I->m->input = v->id;
    return st;
}

static te_status import_graph(imp *I, const Onnx__ModelProto *mp)
{
    const Onnx__GraphProto *g = mp->graph;
    te_status st;
    I->opset = -1;
    for (size_t k = 0; k < mp->n_opset_import; k++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[k];
        if (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx"))
            I->opset = o->has_version ? o->version : 1;
    }
    if (I->opset < 0)
        return te_errf(I->err, TE_EUNSUPPORTED, "the model imports no default-domain ONNX opset");
    if (I->opset < OPSET_MIN || I->opset > OPSET_MAX)
        return te_errf(I->err, TE_EUNSUPPORTED, "ONNX opset %lld is not supported (supported: %d..%d)",
                       (long long)I->opset, OPSET_MIN, OPSET_MAX);
    if (!g)
        return te_errf(I->err, TE_EFORMAT, "the model has no graph");
    for (size_t k = 0; k < g->n_initializer; k++) {
        const Onnx__TensorProto *t = g->initializer[k];
        if (!t->name || !t->name[0])
            return te_errf(I->err, TE_EFORMAT, "initializer %zu has no name", k);
        if ((st = te_imp_load_tensor(I, t, t->name, NULL)))
            return st;
    }
    if ((st = graph_input(I)))
        return st;
    for (size_t k = 0; k < g->n_node; k++)
        if ((st = te_imp_lower(I, g->node[k])))
            return st;
    if (g->n_output < 1 || g->n_output > MAX_OUTPUTS)
        return te_errf(I->err, TE_EUNSUPPORTED, "the model has %zu outputs (1..%d supported)", g->n_output,
                       MAX_OUTPUTS);
    int ids[MAX_OUTPUTS];
    for (size_t k = 0; k < g->n_output; k++) {
        const char *name = g->output[k]->name ? g->output[k]->name : "";
        ival *o = te_imp_lookup(I, name);
        if (!o)
            return te_errf(I->err, TE_EFORMAT, "model output '%s' is not produced by any node", name);
        if (o->is_const)
            return te_errf(I->err, TE_EUNSUPPORTED, "model output '%s' is a constant", o->name);
        ids[k] = o->id;
    }
    if (te_model_set_outputs(I->m, ids, (int)g->n_output) != 0)
        return te_errf(I->err, TE_ENOMEM, "out of memory");
    /* what reads a data-dependent length is refused here, naming the node,
     * rather than when the device loads the bundle */
    te_dyn *dyn = malloc((size_t)I->m->n_values * sizeof *dyn);
    if (!dyn)
        return te_errf(I->err, TE_ENOMEM, "out of memory");
    st = te_model_dyn(I->m, dyn, I->err);
    free(dyn);
    return st;
}

te_status te_onnx_import_buffer(const uint8_t *buf, size_t len, const char *model_name, te_model **out,
                                te_err *err)
{
    return te_onnx_import_buffer_opts(buf, len, model_name, NULL, out, err);
}

te_status te_onnx_import_buffer_opts(const uint8_t *buf, size_t len, const char *model_name,
                                     const te_import_opts *opts, te_model **out, te_err *err)
{
    static const te_import_opts none = {0};
    *out = NULL;
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
    if (!mp)
        return te_errf(err, TE_EFORMAT, "not a valid ONNX model (protobuf parse failed)");
    imp I = {.err = err, .opts = opts ? opts : &none};
    I.m = te_model_new();
    te_status st = TE_OK;
    if (!I.m) {
        st = te_errf(err, TE_ENOMEM, "out of memory");
    } else {
        I.m->name = te_imp_xstrdup(model_name ? model_name
                                       : (mp->graph && mp->graph->name && mp->graph->name[0] ? mp->graph->name
                                                                                              : "model"));
        st = I.m->name ? TE_OK : te_errf(err, TE_ENOMEM, "out of memory");
    }
    if (st == TE_OK) {
        I.g = mp->graph;
        st = import_graph(&I, mp);
    }
    for (int k = 0; k < I.nv; k++)
        te_imp_ival_free(I.v[k]);
    free(I.v);
    onnx__model_proto__free_unpacked(mp, NULL);
    if (st != TE_OK) {
        te_model_free(I.m);
        return st;
    }
    *out = I.m;
    return TE_OK;
}

te_status te_onnx_import(const char *path, te_model **m, te_err *err)
{
    return te_onnx_import_opts(path, NULL, m, err);
}

te_status te_onnx_import_opts(const char *path, const te_import_opts *opts, te_model **m, te_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    *m = NULL;
    te_status st = te_file_read(path, TE_ONNX_MAX_FILE, &buf, &len, err);
    if (st != TE_OK)
        return st;
    /* model name: file name without directory and .onnx */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char name[256];
    snprintf(name, sizeof name, "%s", base);
    size_t nl = strlen(name);
    if (nl > 5 && strcmp(name + nl - 5, ".onnx") == 0)
        name[nl - 5] = '\0';
    st = te_onnx_import_buffer_opts(buf, len, name, opts, m, err);
    free(buf);
    if (st != TE_OK)
        te_err_wrap(err, "%s", path);
    return st;
}

/* If whose condition is a constant once shapes are fixed (exporters emit
 * these for shape checks): the taken branch's nodes are lowered in place,
 * its initializers loaded, and each of the If's outputs becomes an
 * Identity of the branch's.  A condition computed from the input is
 * data-dependent control flow, which the static graph cannot hold. */
te_status te_imp_op_if(imp *I, onode *n)
{
    ival *c;
    te_status st = te_imp_in_req(I, n, 0, &c);
    if (st)
        return st;
    if (!c->is_const)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "the condition ('%s') depends on the input: data-dependent "
                          "control flow is not supported (only a condition that is constant once shapes are fixed)",
                          c->name);
    if (te_imp_numel(&c->shape) != 1)
        return te_imp_bad(I, n, TE_EINVAL, "the condition has %lld elements (one needed)",
                          (long long)te_imp_numel(&c->shape));
    const Onnx__AttributeProto *a = te_imp_attr(n, te_imp_cget(c, 0) != 0 ? "then_branch" : "else_branch");
    const Onnx__GraphProto *g = a ? a->g : NULL;
    if (!g)
        return te_imp_bad(I, n, TE_EFORMAT, "the %s branch is missing", te_imp_cget(c, 0) != 0 ? "then" : "else");
    if (g->n_output != n->n_output)
        return te_imp_bad(I, n, TE_EFORMAT, "the branch has %zu outputs, the node %zu", g->n_output, n->n_output);
    for (size_t k = 0; k < g->n_initializer; k++) {
        const Onnx__TensorProto *t = g->initializer[k];
        if (!t->name || !t->name[0])
            return te_imp_bad(I, n, TE_EFORMAT, "branch initializer %zu has no name", k);
        if ((st = te_imp_load_tensor(I, t, t->name, NULL)))
            return st;
    }
    for (size_t k = 0; k < g->n_node; k++)
        if ((st = te_imp_lower(I, g->node[k])))
            return st;
    for (size_t k = 0; k < n->n_output; k++) {
        if (!n->output[k][0])
            continue;
        Onnx__NodeProto id;
        onnx__node_proto__init(&id);
        char *in = g->output[k]->name, *out = n->output[k];
        char nm[300];
        snprintf(nm, sizeof nm, "%s/out%zu", te_imp_nname(n), k);
        id.op_type = "Identity";
        id.name = nm;
        id.n_input = 1, id.input = &in;
        id.n_output = 1, id.output = &out;
        if ((st = te_imp_op_identity(I, &id)))
            return st;
    }
    return TE_OK;
}
