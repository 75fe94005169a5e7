/* The report JSON of twinedge-run and twinedge-infer (--report): one schema
 * for both, written with cJSON.  Every key is always present; a figure the
 * tool does not know is null.  Keys (schema 1):
 *   schema, tool, model, device_dir, input, output, mode, transport
 *   ("grpc" or "in-process"), edge_a, edge_b, bytes_device_up,
 *   bytes_device_down, bytes_edge_a_in, bytes_edge_a_out, bytes_edge_b_in,
 *   bytes_edge_b_out, messages, wall_s, setup_s, device_cpu_s,
 *   linear_layers, layers_checked, widened_layers, counter, edge_flops,
 *   device_flops, outsourced_flops_fraction.
 * twinedge-run counts the bytes between the hosts too (the hosts' Stats);
 * twinedge-infer only sees the device's link, so its bytes_edge_* are what
 * the device exchanged with each host. */
#ifndef TE_REPORT_H
#define TE_REPORT_H

#include "te_error.h"
#include "te_transport.h"
#include "twinedge_device.h"

#define TE_REPORT_SCHEMA 1

typedef struct te_run_report {
    const char *tool, *model, *device_dir, *input, *output; /* NULL: null */
    twinedge_mode mode;
    int in_process;
    const char *edge_a, *edge_b;
    te_traffic traffic;
    int have_hosts_bytes;   /* bytes_edge_*: 0 = null */
    double wall_s, setup_s, device_cpu_s; /* < 0: null */
    twinedge_report dev;
    double edge_flops, device_flops, outsourced_fraction; /* < 0: null */
} te_run_report;

/* Initialise with every optional figure unknown. */
void te_run_report_init(te_run_report *r, const char *tool);
te_status te_run_report_write(const char *path, const te_run_report *r, te_err *err);

#endif
