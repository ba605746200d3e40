//! The model zoo builds, and pretrained weights load by name with the head replaced, with a clear
//! report (or error) when names do not match.

use std::path::Path;

use loupe::train::models::{load_pretrained, ModelKind, WeightsError};
use tch::nn;
use tch::{Device, Kind, Tensor};

fn lite_weights() -> std::path::PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".weights/efficientnet-lite0.safetensors");
    assert!(
        p.exists(),
        "run scripts/bootstrap.sh test first (fetches the weights)"
    );
    p
}

#[test]
fn every_model_gives_one_logit_per_class() {
    for (kind, size) in [
        (ModelKind::SmallCnn, 32),
        (ModelKind::EfficientnetLite0, 64),
        (ModelKind::Resnet18, 64),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = kind.build(&vs.root(), 7);
        let out = tch::no_grad(|| {
            net.forward_t(
                &Tensor::rand([2, 3, size, size], (Kind::Float, Device::Cpu)),
                false,
            )
        });
        assert_eq!(out.size(), vec![2, 7], "{kind:?}");
    }
}

#[test]
fn lite0_imagenet_weights_load_into_a_new_head() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = ModelKind::EfficientnetLite0.build(&vs.root(), 9);
    let r = load_pretrained(&mut vs, ModelKind::EfficientnetLite0, &lite_weights()).unwrap();
    assert!(r.complete(), "{r:?}");
    assert_eq!((r.loaded, r.unexpected.len()), (245, 0), "{r:?}");
    assert_eq!(r.head, vec!["_fc.bias", "_fc.weight"]);
}

#[test]
fn weights_of_another_network_are_refused_in_words() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = ModelKind::Resnet18.build(&vs.root(), 4);
    let err = load_pretrained(&mut vs, ModelKind::Resnet18, &lite_weights()).unwrap_err();
    assert!(matches!(err, WeightsError::NothingMatches { .. }));
    assert!(err.to_string().contains("shares no tensor name"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"not safetensors at all").unwrap();
    assert!(matches!(
        load_pretrained(&mut vs, ModelKind::Resnet18, &bad),
        Err(WeightsError::Read { .. })
    ));
}

#[test]
fn resnet_checkpoint_round_trip_with_a_different_head() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r18.safetensors");
    let src = nn::VarStore::new(Device::Cpu);
    let _a = ModelKind::Resnet18.build(&src.root(), 10);
    src.save(&file).unwrap();

    let mut dst = nn::VarStore::new(Device::Cpu);
    let _b = ModelKind::Resnet18.build(&dst.root(), 3);
    let r = load_pretrained(&mut dst, ModelKind::Resnet18, &file).unwrap();
    assert!(r.complete() && r.unexpected.is_empty(), "{r:?}");
    assert_eq!(r.head, vec!["fc.bias", "fc.weight"]);
    let (a, b) = (src.variables(), dst.variables());
    assert!(a["conv1.weight"].equal(&b["conv1.weight"]));
    assert!(a["layer4.1.bn2.running_var"].equal(&b["layer4.1.bn2.running_var"]));
}
