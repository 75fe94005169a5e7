/* The model executor: one float buffer per computed value, nodes run in order. */
#include "te_exec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_dyn.h"
#include "te_linear.h"

struct te_exec {
    const te_model *m;
    float **buf;           /* [n_values]: owned buffer, or NULL for constants */
    const float **in_ptrs; /* scratch: input pointers of one node */
    int max_in;
    int ran;               /* the buffers hold a successful run's results */
    int64_t *rows;         /* [n_values]: the last run's length of a data-dependent value, else -1 */
    te_dyn *dyn;           /* [n_values]: te_model_dyn's plan */
    te_value *view;        /* [n_values]: m->values with the run's lengths, what the ops are handed */
    te_model vm;           /* m with values = view */
};

static const char *node_name(const te_node *nd)
{
    return nd->name ? nd->name : "?";
}

static te_status validate(const te_model *m, te_err *err)
{
    if (m->n_values <= 0 || m->input < 0 || m->input >= m->n_values || m->output < 0 || m->output >= m->n_values)
        return te_errf(err, TE_EINVAL, "model input/output value ids (%d, %d) out of range (%d values)", m->input,
                       m->output, m->n_values);
    if (m->values[m->input].data)
        return te_errf(err, TE_EINVAL, "model input value '%s' is a constant",
                       m->values[m->input].name ? m->values[m->input].name : "?");
    for (int i = 0; i < m->n_values; i++) {
        const te_shape *s = &m->values[i].shape;
        if (s->ndim < 0 || s->ndim > TE_MAX_DIMS)
            return te_errf(err, TE_EINVAL, "value %d has %d dimensions", i, s->ndim);
        for (int d = 0; d < s->ndim; d++)
            if (s->d[d] < 0)
                return te_errf(err, TE_ESHAPE, "value '%s' has a negative dimension",
                               m->values[i].name ? m->values[i].name : "?");
    }
    /* every non-constant input must be the model input or computed earlier */
    char *ready = calloc((size_t)m->n_values, 1);
    if (!ready)
        return te_errf(err, TE_ENOMEM, "out of memory");
    ready[m->input] = 1;
    te_status st = TE_OK;
    for (int i = 0; i < m->n_nodes && st == TE_OK; i++) {
        const te_node *nd = &m->nodes[i];
        char a[128], b[128];
        if (nd->op <= TE_OP_INVALID || nd->op >= TE_OP_COUNT_ || nd->op == TE_OP_FLOAT_LINEAR) {
            st = te_errf(err, TE_EUNSUPPORTED, "node '%s': unsupported op %d", node_name(nd), (int)nd->op);
            break;
        }
        if (nd->n_in < 1 || !nd->in) {
            st = te_errf(err, TE_EINVAL, "node '%s' (%s) has no inputs", node_name(nd), te_op_name(nd->op));
            break;
        }
        if (nd->out < 0 || nd->out >= m->n_values || m->values[nd->out].data || ready[nd->out]) {
            st = te_errf(err, TE_EINVAL, "node '%s' (%s): output value id %d is invalid, constant or already computed",
                         node_name(nd), te_op_name(nd->op), nd->out);
            break;
        }
        for (int k = 0; k < nd->n_in; k++) {
            int v = nd->in[k];
            if (v < 0 || v >= m->n_values) {
                st = te_errf(err, TE_EINVAL, "node '%s' (%s): input %d has value id %d out of range", node_name(nd),
                             te_op_name(nd->op), k, v);
                break;
            }
            if (!m->values[v].data && !ready[v]) {
                st = te_errf(err, TE_EINVAL, "node '%s' (%s): input '%s' is used before it is computed",
                             node_name(nd), te_op_name(nd->op), m->values[v].name ? m->values[v].name : "?");
                break;
            }
        }
        if (st != TE_OK)
            break;
        if (nd->op == TE_OP_LINEAR) {
            if (nd->layer < 0 || nd->layer >= m->n_layers) {
                st = te_errf(err, TE_EINVAL, "node '%s' (Linear): layer index %d out of range (%d layers)",
                             node_name(nd), nd->layer, m->n_layers);
                break;
            }
            const te_linear_geom *g = &m->layers[nd->layer].geom;
            const te_shape *si = &m->values[nd->in[0]].shape, *so = &m->values[nd->out].shape;
            int64_t want_in = g->batch * te_geom_in_len(g), want_out = g->batch * te_geom_out_len(g);
            if (te_shape_numel(si) != want_in || te_shape_numel(so) != want_out) {
                st = te_errf(err, TE_ESHAPE,
                             "node '%s' (Linear): input %s / output %s do not match the layer geometry "
                             "(%lld / %lld elements)",
                             node_name(nd), te_shape_str(si, a, sizeof a), te_shape_str(so, b, sizeof b),
                             (long long)want_in, (long long)want_out);
                break;
            }
        }
        ready[nd->out] = 1;
    }
    for (int k = 0; st == TE_OK && k < te_model_n_outputs(m); k++) {
        int o = te_model_output(m, k);
        if (o < 0 || o >= m->n_values)
            st = te_errf(err, TE_EINVAL, "model output %d has value id %d out of range", k, o);
        else if (!m->values[o].data && !ready[o])
            st = te_errf(err, TE_EINVAL, "model output '%s' is never computed",
                         m->values[o].name ? m->values[o].name : "?");
    }
    free(ready);
    return st;
}

te_status te_exec_new(const te_model *m, te_exec **exp, te_err *err)
{
    if (!m || !exp)
        return te_errf(err, TE_EINVAL, "te_exec_new: NULL argument");
    *exp = NULL;
    te_status st = validate(m, err);
    if (st != TE_OK)
        return st;
    te_exec *ex = calloc(1, sizeof *ex);
    if (!ex)
        return te_errf(err, TE_ENOMEM, "out of memory");
    ex->m = m;
    ex->buf = calloc((size_t)m->n_values, sizeof *ex->buf);
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].n_in > ex->max_in)
            ex->max_in = m->nodes[i].n_in;
    ex->in_ptrs = calloc((size_t)(ex->max_in > 0 ? ex->max_in : 1), sizeof *ex->in_ptrs);
    ex->rows = malloc((size_t)m->n_values * sizeof *ex->rows);
    ex->dyn = malloc((size_t)m->n_values * sizeof *ex->dyn);
    ex->view = malloc((size_t)m->n_values * sizeof *ex->view);
    if (!ex->buf || !ex->in_ptrs || !ex->rows || !ex->dyn || !ex->view) {
        te_exec_free(ex);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    if ((st = te_model_dyn(m, ex->dyn, err)) != TE_OK) {
        te_exec_free(ex);
        return st;
    }
    ex->vm = *m;
    ex->vm.values = ex->view;
    for (int i = 0; i < m->n_values; i++) {
        if (m->values[i].data)
            continue;
        int64_t n = te_shape_numel(&m->values[i].shape);
        ex->buf[i] = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
        if (!ex->buf[i]) {
            te_exec_free(ex);
            return te_errf(err, TE_ENOMEM, "out of memory allocating value '%s' (%lld floats)",
                           m->values[i].name ? m->values[i].name : "?", (long long)n);
        }
    }
    *exp = ex;
    return TE_OK;
}

void te_exec_free(te_exec *ex)
{
    if (!ex)
        return;
    if (ex->buf)
        for (int i = 0; i < ex->m->n_values; i++)
            free(ex->buf[i]);
    free(ex->buf);
    free(ex->in_ptrs);
    free(ex->rows);
    free(ex->dyn);
    free(ex->view);
    free(ex);
}

te_status te_exec_run(te_exec *ex, const float *input, size_t n_input, te_linear_fn fn, void *fn_ctx, te_err *err)
{
    if (!ex || !input || !fn)
        return te_errf(err, TE_EINVAL, "te_exec_run: NULL argument");
    const te_model *m = ex->m;
    const te_shape *ish = &m->values[m->input].shape;
    int64_t want = te_shape_numel(ish);
    ex->ran = 0;
    if ((int64_t)n_input != want) {
        char a[128];
        return te_errf(err, TE_ESHAPE, "input has %zu elements, model expects shape %s (%lld elements)", n_input,
                       te_shape_str(ish, a, sizeof a), (long long)want);
    }
    memcpy(ex->buf[m->input], input, n_input * sizeof(float));
    /* the ops see every value with its run's length (te_dyn.h), so none
     * reads or writes past it; a data-dependent value fills the first
     * elements of its buffer, in its run shape */
    memcpy(ex->view, m->values, (size_t)m->n_values * sizeof *ex->view);
    for (int i = 0; i < m->n_values; i++)
        ex->rows[i] = -1;
    for (int i = 0; i < m->n_nodes; i++) {
        const te_node *nd = &m->nodes[i];
        for (int k = 0; k < nd->n_in; k++) {
            int v = nd->in[k];
            ex->in_ptrs[k] = m->values[v].data ? m->values[v].data : ex->buf[v];
        }
        float *out = ex->buf[nd->out];
        const te_dyn *dy = &ex->dyn[nd->out];
        te_status st;
        if (nd->op == TE_OP_LINEAR) {
            st = fn(fn_ctx, m, nd->layer, ex->in_ptrs[0], out, err);
        } else if (dy->src == nd->out) {
            int64_t r = -1;
            st = te_op_run_rows(&ex->vm, nd, ex->in_ptrs, out, &r, err);
            if (st == TE_OK && (r < 0 || r > m->values[nd->out].shape.d[dy->axis]))
                st = te_errf(err, TE_EINVAL, "%lld rows out of 0..%lld", (long long)r,
                             (long long)m->values[nd->out].shape.d[dy->axis]);
            else if (st == TE_OK)
                ex->rows[nd->out] = ex->view[nd->out].shape.d[dy->axis] = r;
        } else {
            if (dy->axis >= 0) {
                int64_t r = ex->rows[dy->src], cap = m->values[nd->out].shape.d[dy->axis];
                ex->rows[nd->out] = ex->view[nd->out].shape.d[dy->axis] = r < cap ? r : cap;
            }
            st = te_op_run(&ex->vm, nd, ex->in_ptrs, out, err);
        }
        if (st != TE_OK) {
            te_err_wrap(err, "node '%s' (%s)", node_name(nd), te_op_name(nd->op));
            return st;
        }
    }
    ex->ran = 1;
    return TE_OK;
}

const float *te_exec_output_at(const te_exec *ex, int k, te_shape *shape)
{
    int o = ex ? te_model_output(ex->m, k) : -1;
    if (!ex || !ex->ran || o < 0)
        return NULL;
    const te_value *v = &ex->m->values[o];
    if (shape) {
        *shape = v->shape;
        if (ex->rows[o] >= 0)
            shape->d[ex->dyn[o].axis] = ex->rows[o];
    }
    return v->data ? v->data : ex->buf[o];
}

const te_model *te_exec_model(const te_exec *ex)
{
    return ex ? ex->m : NULL;
}

void te_exec_forget(te_exec *ex)
{
    if (ex)
        ex->ran = 0;
}

const float *te_exec_output(const te_exec *ex, te_shape *shape)
{
    return te_exec_output_at(ex, 0, shape);
}

size_t te_exec_outputs_copy(const te_exec *ex, float *dst)
{
    size_t at = 0;
    te_shape s;
    for (int k = 0; ex && ex->ran && k < te_model_n_outputs(ex->m); k++) {
        const float *y = te_exec_output_at(ex, k, &s);
        size_t n = (size_t)te_shape_numel(&s);
        size_t slot = (size_t)te_shape_numel(&ex->m->values[te_model_output(ex->m, k)].shape);
        memcpy(dst + at, y, n * sizeof *dst);
        memset(dst + at + n, 0, (slot - n) * sizeof *dst); /* a data-dependent output's unused rows */
        at += slot;
    }
    return at;
}

/* ---- built-in linear functions ------------------------------------------ */

static te_status check_layer(const te_model *m, int layer, te_err *err)
{
    if (!m || layer < 0 || layer >= m->n_layers)
        return te_errf(err, TE_EINVAL, "layer index %d out of range", layer);
    return TE_OK;
}

te_status te_linear_fn_float(void *ctx, const te_model *m, int layer, const float *x, float *y, te_err *err)
{
    te_status st = check_layer(m, layer, err);
    if (st != TE_OK)
        return st;
    const te_layer *L = &m->layers[layer];
    if (!L->w_float)
        return te_errf(err, TE_EINVAL, "layer '%s' has no float weights (w_float)", L->name ? L->name : "?");
    const te_linear_geom *g = &L->geom;
    te_linear_float(g, L->w_float, x, y);
    if (L->bias) {
        int64_t out_len = te_geom_out_len(g);
        if (g->kind == TE_LIN_CONV) {
            int64_t hw = g->out_h * g->out_w;
            for (int64_t b = 0; b < g->batch; b++)
                for (int64_t o = 0; o < g->out_c; o++) {
                    float *yo = y + b * out_len + o * hw;
                    for (int64_t k = 0; k < hw; k++)
                        yo[k] += L->bias[o];
                }
        } else {
            for (int64_t b = 0; b < g->batch; b++)
                for (int64_t k = 0; k < out_len; k++)
                    y[b * out_len + k] += L->bias[te_linear_out_channel(g, k)];
        }
    }
    return TE_OK;
}

te_status te_linear_fn_fixed(void *ctx, const te_model *m, int layer, const float *x, float *y, te_err *err)
{
    te_status st = check_layer(m, layer, err);
    if (st != TE_OK)
        return st;
    const te_layer *L = &m->layers[layer];
    const char *name = L->name ? L->name : "?";
    if (!L->w || !L->w_scale)
        return te_errf(err, TE_EINVAL, "layer '%s' lacks integer weights or scales", name);
    if (L->ring_bits < 2 || L->ring_bits > 64)
        return te_errf(err, TE_EINVAL, "layer '%s': ring width %d out of range", name, L->ring_bits);
    /* the ring width the device would choose for this input */
    te_layer_plan plan;
    if ((st = te_layer_plan_input(L, x, &plan, err)) != TE_OK)
        return st;
    const te_linear_geom *g = &L->geom;
    unsigned l = plan.l;
    int64_t n_in = g->batch * te_geom_in_len(g), n_out = g->batch * te_geom_out_len(g);
    uint64_t *xi = malloc((size_t)(n_in > 0 ? n_in : 1) * sizeof *xi);
    uint64_t *yi = malloc((size_t)(n_out > 0 ? n_out : 1) * sizeof *yi);
    if (!xi || !yi) {
        free(xi);
        free(yi);
        return te_errf(err, TE_ENOMEM, "layer '%s': out of memory", name);
    }
    st = te_layer_encode(L, l, x, xi, err);
    if (st == TE_OK) {
        te_linear_ref_ring(g, L->w, l, xi, yi);
        /* with keys (a provisioned device's model) the reference check too */
        if (L->r && L->s)
            st = te_layer_verify(L, l, xi, yi, err);
    }
    if (st == TE_OK)
        te_layer_decode(L, l, yi, y);
    free(xi);
    free(yi);
    return st;
}
