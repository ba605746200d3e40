//! Attributes of a group rather than of one image: with a group column (a person id), the label
//! columns whose value is the same on (almost) every photo of a group (a person's gender and
//! age, not the mask of one photo), and the images that disagree with their group's majority.
//! Plain counting over the labels (no pixels): cheap enough to redo after every edit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Dataset;

/// A column is an attribute of the group when at least this share of groups (of two or more
/// images) agree on it entirely. Below it (a mask, varying photo by photo) disagreement is
/// normal and nothing is suspected.
pub const GROUP_LEVEL: f64 = 0.9;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupColumn {
    pub name: String,
    /// Groups of two or more images.
    pub groups: usize,
    /// Share of them whose images all have the same value.
    pub agreeing: f64,
}

impl GroupColumn {
    /// Whether the value belongs to the group (see [`GROUP_LEVEL`]).
    pub fn is_group_level(&self) -> bool {
        self.groups > 0 && self.agreeing >= GROUP_LEVEL
    }
}

/// An image whose value in a group-level column differs from its group's clear majority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disagreement {
    /// Dataset sample index.
    pub sample: usize,
    pub column: usize,
    pub value: String,
    /// The value most of the group has.
    pub majority: String,
    pub group: String,
    /// Images of the group with the majority value, and in all.
    pub support: (usize, usize),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupCheck {
    /// Every label column, in order.
    pub columns: Vec<GroupColumn>,
    pub disagreements: Vec<Disagreement>,
}

/// The check over `ds` (its samples' groups and label parts); `None` without groups.
pub fn check(ds: &Dataset) -> Option<GroupCheck> {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in ds.samples.iter().enumerate() {
        if let Some(g) = &s.group {
            groups.entry(g.as_str()).or_default().push(i);
        }
    }
    if groups.is_empty() {
        return None;
    }
    let mut out = GroupCheck::default();
    for (column, name) in ds.label_columns.iter().enumerate() {
        let (mut multi, mut agreeing) = (0usize, 0usize);
        let mut majorities = Vec::new();
        for (g, members) in &groups {
            if members.len() < 2 {
                continue;
            }
            multi += 1;
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for &i in members {
                *counts.entry(part(ds, i, column)).or_default() += 1;
            }
            if counts.len() == 1 {
                agreeing += 1;
                continue;
            }
            let (top, n) = counts
                .iter()
                .max_by_key(|(_, &n)| n)
                .map(|(v, &n)| (*v, n))
                .expect("a group with members has counts");
            // A tie says nothing about which value is right.
            if 2 * n > members.len() {
                majorities.push((*g, top, n, members));
            }
        }
        let col = GroupColumn {
            name: name.clone(),
            groups: multi,
            agreeing: if multi == 0 {
                0.0
            } else {
                agreeing as f64 / multi as f64
            },
        };
        if col.is_group_level() {
            for (g, top, n, members) in majorities {
                for &i in members {
                    let value = part(ds, i, column);
                    if value != top {
                        out.disagreements.push(Disagreement {
                            sample: i,
                            column,
                            value: value.to_string(),
                            majority: top.to_string(),
                            group: g.to_string(),
                            support: (n, members.len()),
                        });
                    }
                }
            }
        }
        out.columns.push(col);
    }
    Some(out)
}

fn part(ds: &Dataset, i: usize, column: usize) -> &str {
    ds.samples[i].parts.get(column).map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::scan::{CsvSource, Sample, Source};
    use crate::dataset::ImageInfo;

    /// People of 5 photos each, (mask, gender) per photo.
    fn people(photos: &[(&str, &str, &str)]) -> Dataset {
        let samples: Vec<Sample> = photos
            .iter()
            .enumerate()
            .map(|(k, (id, mask, gender))| Sample {
                path: format!("{k}.png").into(),
                label: format!("{mask}/{gender}"),
                parts: vec![mask.to_string(), gender.to_string()],
                group: Some(id.to_string()),
                info: ImageInfo {
                    format: image::ImageFormat::Png,
                    width: 8,
                    height: 8,
                    color: image::ColorType::Rgb8,
                    orientation: 1,
                    bytes: 100,
                    content_hash: None,
                },
            })
            .collect();
        Dataset {
            root: "/d".into(),
            source: Source::Csv(CsvSource {
                csv: "/d/l.csv".into(),
                path_col: "path".into(),
                label_cols: vec!["mask".into(), "gender".into()],
                group_col: Some("id".into()),
            }),
            label_columns: vec!["mask".into(), "gender".into()],
            classes: Vec::new(),
            samples,
            rejected: Vec::new(),
            ignored: Vec::new(),
        }
    }

    #[test]
    fn a_photo_against_its_groups_gender_is_named_and_masks_are_left_alone() {
        let mut photos = Vec::new();
        for p in 0..10 {
            let id: &'static str = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"][p];
            let gender = if p % 2 == 0 { "f" } else { "m" };
            for k in 0..5 {
                let mask = if k == 0 { "no" } else { "wear" };
                // Photo 3 of person "c" is labelled male, against her four other photos.
                let g = if id == "c" && k == 3 { "m" } else { gender };
                photos.push((id, mask, g));
            }
        }
        let check = check(&people(&photos)).unwrap();
        assert!(!check.columns[0].is_group_level(), "{:?}", check.columns);
        assert!(check.columns[1].is_group_level());
        assert!((check.columns[1].agreeing - 0.9).abs() < 1e-9);
        assert_eq!(
            check.disagreements,
            [Disagreement {
                sample: 13,
                column: 1,
                value: "m".into(),
                majority: "f".into(),
                group: "c".into(),
                support: (4, 5),
            }]
        );
    }

    #[test]
    fn ties_and_ungrouped_data_suspect_nothing() {
        let mut photos = Vec::new();
        for id in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"] {
            photos.extend([(id, "wear", "f"), (id, "wear", "f")]);
        }
        photos.extend([("k", "wear", "f"), ("k", "wear", "m")]);
        let check = check(&people(&photos)).unwrap();
        assert!(check.columns[1].is_group_level());
        assert!(check.disagreements.is_empty(), "{:?}", check.disagreements);

        let mut ds = people(&photos);
        for s in &mut ds.samples {
            s.group = None;
        }
        assert!(super::check(&ds).is_none());
    }
}
