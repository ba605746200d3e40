//! The keys every panel shares, so they mean the same everywhere: Ctrl+Z undoes, Ctrl+Shift+Z
//! (or Ctrl+Y) redoes, 1..9 pick the class with that number in the class panel.

use egui::{InputState, Key, Modifiers};

use super::command::Commands;
use crate::dataset::workspace::LabelCmd;

const DIGITS: [Key; 9] = [
    Key::Num1,
    Key::Num2,
    Key::Num3,
    Key::Num4,
    Key::Num5,
    Key::Num6,
    Key::Num7,
    Key::Num8,
    Key::Num9,
];

/// Undo and redo through the journal.
pub fn undo_redo(i: &mut InputState, cmds: &mut Commands) {
    if i.consume_key(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z)
        || i.consume_key(Modifiers::COMMAND, Key::Y)
    {
        cmds.push(LabelCmd::Redo);
    }
    if i.consume_key(Modifiers::COMMAND, Key::Z) {
        cmds.push(LabelCmd::Undo);
    }
}

/// The class whose number key (1..9) was pressed, if one was.
pub fn class_key<'a>(i: &mut InputState, classes: &'a [String]) -> Option<&'a String> {
    let k = DIGITS
        .iter()
        .position(|key| i.consume_key(Modifiers::NONE, *key))?;
    classes.get(k)
}
