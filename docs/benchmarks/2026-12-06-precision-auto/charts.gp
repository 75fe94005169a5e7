set terminal pngcairo size 1100,520 font ',10'
set grid ytics
set key outside right top
set output 'alexnet-latency-per-layer.png'
set title 'alexnet: time per outsourced layer (loopback, from one layer to the next)'
set xlabel 'linear layer'
set ylabel 'ms'
set logscale y
plot 'alexnet-layers.dat' u 1:2 w lp t 'plaintext outsourcing', 'alexnet-layers.dat' u 1:3 w lp t 'twinedge relay', '' u 1:4 w lp t 'twinedge mediated', '' u 1:5 w lp t 'LEP-CNN'
unset logscale y
set output 'alexnet-bytes-per-layer.png'
set title 'alexnet: device link bytes per layer (up + down)'
set ylabel 'KiB'
set logscale y
plot 'alexnet-layers.dat' u 1:6 w lp t 'plaintext outsourcing (float32)', 'alexnet-layers.dat' u 1:7 w lp t 'twinedge relay', '' u 1:8 w lp t 'twinedge mediated', '' u 1:9 w lp t 'LEP-CNN'
unset logscale y
set output 'facenet-latency-per-layer.png'
set title 'facenet: time per outsourced layer (loopback, from one layer to the next)'
set xlabel 'linear layer'
set ylabel 'ms'
set logscale y
plot 'facenet-layers.dat' u 1:2 w lp t 'plaintext outsourcing', 'facenet-layers.dat' u 1:3 w lp t 'twinedge relay', '' u 1:4 w lp t 'twinedge mediated', '' u 1:5 w lp t 'LEP-CNN'
unset logscale y
set output 'facenet-bytes-per-layer.png'
set title 'facenet: device link bytes per layer (up + down)'
set ylabel 'KiB'
set logscale y
plot 'facenet-layers.dat' u 1:6 w lp t 'plaintext outsourcing (float32)', 'facenet-layers.dat' u 1:7 w lp t 'twinedge relay', '' u 1:8 w lp t 'twinedge mediated', '' u 1:9 w lp t 'LEP-CNN'
unset logscale y
set output 'resnet18-latency-per-layer.png'
set title 'resnet18: time per outsourced layer (loopback, from one layer to the next)'
set xlabel 'linear layer'
set ylabel 'ms'
set logscale y
plot 'resnet18-layers.dat' u 1:2 w lp t 'plaintext outsourcing', 'resnet18-layers.dat' u 1:3 w lp t 'twinedge relay', '' u 1:4 w lp t 'twinedge mediated', '' u 1:5 w lp t 'LEP-CNN'
unset logscale y
set output 'resnet18-bytes-per-layer.png'
set title 'resnet18: device link bytes per layer (up + down)'
set ylabel 'KiB'
set logscale y
plot 'resnet18-layers.dat' u 1:6 w lp t 'plaintext outsourcing (float32)', 'resnet18-layers.dat' u 1:7 w lp t 'twinedge relay', '' u 1:8 w lp t 'twinedge mediated', '' u 1:9 w lp t 'LEP-CNN'
unset logscale y
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set xlabel ''
set logscale y
set output 'summary-latency.png'
set title 'End-to-end latency of one inference (log scale)'
set ylabel 'ms'
plot 'summary.dat' u 2:xtic(1) t 'local plaintext (device, 1 core)', '' u 3 t 'plaintext outsourcing, loopback', '' u 4 t 'twinedge relay, loopback', '' u 5 t 'twinedge mediated, loopback', '' u 6 t 'LEP-CNN, loopback', '' u 7 t 'plaintext outsourcing, wireless', '' u 8 t 'twinedge relay, wireless'
set output 'summary-bytes.png'
set title 'Device link bytes per inference (log scale)'
set ylabel 'MiB'
plot 'summary.dat' u 11:xtic(1) t 'plaintext outsourcing (float32)', '' u 12 t 'twinedge relay', '' u 13 t 'twinedge mediated', '' u 14 t 'LEP-CNN'
