# Sourced by the benchmarks that use Fashion-MNIST: puts the Debian package dataset-fashion-mnist
# (real product photos, 28x28 grey, 10 classes, MIT) in .bench-data/fashion-mnist once
# (apt-get download: no root needed).
FMNIST=.bench-data/fashion-mnist
if [ ! -f "$FMNIST/t10k-images-idx3-ubyte.gz" ]; then
    mkdir -p .bench-data
    (cd .bench-data && apt-get download dataset-fashion-mnist >/dev/null && dpkg-deb -x dataset-fashion-mnist_*.deb pkg \
        && mv pkg/usr/share/datasets/fashion-mnist fashion-mnist && rm -rf pkg dataset-fashion-mnist_*.deb)
fi
