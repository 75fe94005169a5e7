#include "te_report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void te_run_report_init(te_run_report *r, const char *tool)
{
    memset(r, 0, sizeof *r);
    r->tool = tool;
    r->wall_s = r->setup_s = r->device_cpu_s = -1;
    r->edge_flops = r->device_flops = r->outsourced_fraction = -1;
}

/* A string or null; a number (>= 0) or null.  Each returns 0 when cJSON ran
 * out of memory. */
static int add_str(cJSON *o, const char *k, const char *v)
{
    return (v ? cJSON_AddStringToObject(o, k, v) : cJSON_AddNullToObject(o, k)) != NULL;
}
static int add_num(cJSON *o, const char *k, double v, int known)
{
    return (known ? cJSON_AddNumberToObject(o, k, v) : cJSON_AddNullToObject(o, k)) != NULL;
}

te_status te_run_report_write(const char *path, const te_run_report *r, te_err *err)
{
    cJSON *o = cJSON_CreateObject();
    const te_traffic *t = &r->traffic;
    int hb = r->have_hosts_bytes;
    int ok = o && add_num(o, "schema", TE_REPORT_SCHEMA, 1) && add_str(o, "tool", r->tool) &&
             add_str(o, "model", r->model) && add_str(o, "device_dir", r->device_dir) &&
             add_str(o, "input", r->input) && add_str(o, "output", r->output) &&
             add_str(o, "mode", r->mode == TWINEDGE_RELAY ? "relay" : "mediated") &&
             add_str(o, "transport", r->in_process ? "in-process" : "grpc") && add_str(o, "edge_a", r->edge_a) &&
             add_str(o, "edge_b", r->edge_b) && add_num(o, "bytes_device_up", (double)t->device_up, 1) &&
             add_num(o, "bytes_device_down", (double)t->device_down, 1) &&
             add_num(o, "bytes_edge_a_in", (double)t->edge_a_in, hb) &&
             add_num(o, "bytes_edge_a_out", (double)t->edge_a_out, hb) &&
             add_num(o, "bytes_edge_b_in", (double)t->edge_b_in, hb) &&
             add_num(o, "bytes_edge_b_out", (double)t->edge_b_out, hb) &&
             add_num(o, "messages", (double)t->messages, 1) && add_num(o, "wall_s", r->wall_s, r->wall_s >= 0) &&
             add_num(o, "setup_s", r->setup_s, r->setup_s >= 0) &&
             add_num(o, "device_cpu_s", r->device_cpu_s, r->device_cpu_s >= 0) &&
             add_num(o, "linear_layers", r->dev.linear_layers, 1) &&
             add_num(o, "layers_checked", r->dev.layers_checked, 1) &&
             add_num(o, "widened_layers", r->dev.widened_layers, 1) &&
             add_num(o, "counter", (double)r->dev.counter, 1) &&
             add_num(o, "edge_flops", r->edge_flops, r->edge_flops >= 0) &&
             add_num(o, "device_flops", r->device_flops, r->device_flops >= 0) &&
             add_num(o, "outsourced_flops_fraction", r->outsourced_fraction, r->outsourced_fraction >= 0);
    char *text = ok ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    if (!text)
        return te_errf(err, TE_ENOMEM, "out of memory writing the report");
    te_status st = TE_OK;
    FILE *f = fopen(path, "w");
    if (!f) {
        st = te_errf(err, TE_EIO, "cannot write %s: %s", path, strerror(errno));
    } else {
        int bad = fputs(text, f) == EOF || fputc('\n', f) == EOF;
        if ((fclose(f) != 0 || bad) && st == TE_OK)
            st = te_errf(err, TE_EIO, "cannot write %s", path);
    }
    free(text);
    return st;
}
