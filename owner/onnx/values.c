/* ONNX import: the importer's value table (constants and runtime values)
 * and the inputs and outputs of a node. */
#include "onnx_internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *te_imp_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

te_status te_imp_nomem(imp *I)
{
    return te_errf(I->err, TE_ENOMEM, "out of memory while importing the ONNX model");
}


te_status te_imp_bad(imp *I, onode *n, te_status code, const char *fmt, ...)
{
    char msg[TE_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return te_errf(I->err, code, "%s node '%s': %s", n->op_type, te_imp_nname(n), msg);
}

void te_imp_ival_free(ival *v)
{
    if (!v)
        return;
    free(v->name);
    if (v->f_owned)
        free(v->f);
    free(v->i);
    free(v);
}

ival *te_imp_lookup(imp *I, const char *name)
{
    for (int k = I->nv - 1; k >= 0; k--)
        if (strcmp(I->v[k]->name, name) == 0)
            return I->v[k];
    return NULL;
}

/* Register v (taken over, also on failure). A later definition shadows. */
te_status te_imp_add_ival(imp *I, ival *v)
{
    if (I->nv == I->cap) {
        int nc = I->cap ? I->cap * 2 : 64;
        ival **p = realloc(I->v, (size_t)nc * sizeof *p);
        if (!p) {
            te_imp_ival_free(v);
            return te_imp_nomem(I);
        }
        I->v = p;
        I->cap = nc;
    }
    I->v[I->nv++] = v;
    return TE_OK;
}

ival *te_imp_ival_new(const char *name, const te_shape *s)
{
    ival *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->name = te_imp_xstrdup(name);
    if (!v->name) {
        free(v);
        return NULL;
    }
    v->shape = *s;
    v->id = -1;
    return v;
}

/* A new runtime value (model value + ival). */
te_status te_imp_new_rt(imp *I, const char *name, const te_shape *s, ival **out)
{
    ival *v = te_imp_ival_new(name, s);
    if (!v)
        return te_imp_nomem(I);
    v->id = te_model_add_value(I->m, name, s, NULL);
    if (v->id < 0) {
        te_imp_ival_free(v);
        return te_imp_nomem(I);
    }
    te_status st = te_imp_add_ival(I, v);
    if (st == TE_OK && out)
        *out = v;
    return st;
}

/* A new constant: f or i (owned) holds numel(s) elements. */
te_status te_imp_new_const(imp *I, const char *name, const te_shape *s, float *f, int64_t *i)
{
    ival *v = te_imp_ival_new(name, s);
    if (!v) {
        free(f);
        free(i);
        return te_imp_nomem(I);
    }
    v->is_const = 1;
    v->f = f;
    v->f_owned = 1;
    v->i = i;
    v->is_int = i != NULL;
    return te_imp_add_ival(I, v);
}

double te_imp_cget(const ival *v, int64_t k)
{
    return v->is_int ? (double)v->i[k] : (double)v->f[k];
}

/* Constant as a fresh float array (caller frees). */
float *te_imp_const_floats(const ival *v)
{
    int64_t n = te_imp_numel(&v->shape);
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
    if (!f)
        return NULL;
    for (int64_t k = 0; k < n; k++)
        f[k] = (float)te_imp_cget(v, k);
    return f;
}

int64_t te_imp_d2i(double d)
{
    if (!(d == d))
        return 0;
    if (d >= 9.2e18)
        return INT64_MAX;
    if (d <= -9.2e18)
        return INT64_MIN;
    return (int64_t)d;
}

int64_t te_imp_cget_i(const ival *v, int64_t k)
{
    return v->is_int ? v->i[k] : te_imp_d2i((double)v->f[k]);
}

/* Model value id of v, putting a constant on the device if needed. */
te_status te_imp_rt_id(imp *I, ival *v, int *id)
{
    if (v->id < 0) {
        float *f = te_imp_const_floats(v);
        if (!f)
            return te_imp_nomem(I);
        v->id = te_model_add_value(I->m, v->name, &v->shape, f);
        if (v->id < 0) {
            free(f);
            return te_imp_nomem(I);
        }
    }
    *id = v->id;
    return TE_OK;
}

/* Input k or NULL when absent/empty; TE_EFORMAT when named but undefined. */
static te_status in_opt(imp *I, onode *n, size_t k, ival **out)
{
    *out = NULL;
    if (k >= n->n_input || !n->input[k][0])
        return TE_OK;
    *out = te_imp_lookup(I, n->input[k]);
    if (!*out)
        return te_imp_bad(I, n, TE_EFORMAT, "input '%s' is not defined before use", n->input[k]);
    return TE_OK;
}

te_status te_imp_in_req(imp *I, onode *n, size_t k, ival **out)
{
    te_status st = in_opt(I, n, k, out);
    if (st == TE_OK && !*out)
        return te_imp_bad(I, n, TE_EFORMAT, "missing input %zu", k);
    return st;
}

te_status te_imp_in_const(imp *I, onode *n, size_t k, int required, ival **out, const char *what)
{
    te_status st = required ? te_imp_in_req(I, n, k, out) : in_opt(I, n, k, out);
    if (st != TE_OK)
        return st;
    if (*out && !(*out)->is_const)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "%s ('%s') must be a constant", what, (*out)->name);
    return TE_OK;
}

const char *te_imp_out_name(onode *n)
{
    return n->n_output > 0 ? n->output[0] : "";
}

/* A node's extra outputs must be unused. */
static int name_used(imp *I, const char *name)
{
    return name[0] && te_imp_use_count(I, name) > 0;
}

/* Uses of name by the nodes of g and of the graphs in their attributes
 * (If's branches, which may read any outer value), and by those graphs'
 * outputs. */
static int graph_uses(const Onnx__GraphProto *g, const char *name, int sub)
{
    int c = 0;
    for (size_t k = 0; k < g->n_node; k++) {
        const Onnx__NodeProto *n = g->node[k];
        for (size_t j = 0; j < n->n_input; j++)
            c += strcmp(n->input[j], name) == 0;
        for (size_t a = 0; a < n->n_attribute; a++) {
            if (n->attribute[a]->g)
                c += graph_uses(n->attribute[a]->g, name, 1);
            for (size_t j = 0; j < n->attribute[a]->n_graphs; j++)
                c += graph_uses(n->attribute[a]->graphs[j], name, 1);
        }
    }
    for (size_t k = 0; sub && k < g->n_output; k++)
        c += strcmp(g->output[k]->name, name) == 0;
    return c;
}

int te_imp_use_count(imp *I, const char *name)
{
    int c = graph_uses(I->g, name, 0);
    const Onnx__GraphProto *g = I->g;
    for (size_t k = 0; k < g->n_output; k++)
        if (strcmp(g->output[k]->name, name) == 0)
            c += 2; /* a graph output is never folded away */
    return c;
}

te_status te_imp_only_first_output(imp *I, onode *n)
{
    for (size_t k = 1; k < n->n_output; k++)
        if (name_used(I, n->output[k]))
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "output %zu ('%s') is used, only the first output is supported", k,
                       n->output[k]);
    return TE_OK;
}

te_status te_imp_alias(imp *I, ival *x, const char *name)
{
    ival *v = te_imp_ival_new(name, &x->shape);
    if (!v)
        return te_imp_nomem(I);
    v->id = x->id;
    /* the model value takes the later name (the earlier one is consumed only here) */
    char *nm = te_imp_xstrdup(name);
    if (!nm) {
        te_imp_ival_free(v);
        return te_imp_nomem(I);
    }
    free(I->m->values[x->id].name);
    I->m->values[x->id].name = nm;
    return te_imp_add_ival(I, v);
}

te_status te_imp_rt_input(imp *I, onode *n, ival **x)
{
    te_status st = te_imp_in_req(I, n, 0, x);
    if (st == TE_OK && (*x)->is_const)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "a constant input ('%s') is not supported for this op", (*x)->name);
    return st;
}
