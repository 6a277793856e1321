//! Masking of the buyer's nick and mobile number for
//! `alibaba.alisports.lianbei.order.notice`.
//!
//! This module owns only the two masking rules; deciding *when* to mask is the
//! caller's business.
//!
//! Design choices:
//! - Lengths and positions count Unicode scalar values (`char`s), never bytes,
//!   so multi-byte nicks (Chinese, emoji) are never split mid-character and a
//!   malformed slice can never panic.
//! - The number of stars is fixed (two for a nick, four for a mobile) rather
//!   than one per hidden character, so the output does not leak the length of
//!   the hidden part.
//! - Grapheme clusters are not considered: a nick made of combining sequences
//!   may have a combining mark kept on its own. Staying on `char`s keeps the
//!   module std-only and the result predictable.

/// Masks a buyer nick: first char + `**` + last char when it has at least
/// three chars, first char + `*` for two chars, `*` for one, empty for empty.
pub fn mask_nick(nick: &str) -> String {
    let mut chars = nick.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    // `next_back` on the same iterator yields None when only one char existed,
    // which lets us tell the 1/2/≥3 cases apart without collecting.
    let Some(last) = chars.next_back() else {
        return "*".to_owned();
    };
    if chars.next().is_none() {
        // Exactly two chars: revealing the last one too would reveal it all.
        let mut out = String::with_capacity(first.len_utf8() + 1);
        out.push(first);
        out.push('*');
        return out;
    }
    let mut out = String::with_capacity(first.len_utf8() + 2 + last.len_utf8());
    out.push(first);
    out.push_str("**");
    out.push(last);
    out
}

/// Masks a mobile number: first three chars + `****` + last two chars when it
/// has at least six chars, `****` for one to five chars, empty for empty.
pub fn mask_mobile(mobile: &str) -> String {
    const KEEP_HEAD: usize = 3;
    const KEEP_TAIL: usize = 2;
    const MIN_LEN: usize = 6;

    let len = mobile.chars().count();
    if len == 0 {
        return String::new();
    }
    if len < MIN_LEN {
        // Too short to reveal anything without giving most of it away.
        return "****".to_owned();
    }
    if mobile.is_ascii() {
        // Every stored mobile number: slice instead of collecting characters.
        let mut out = String::with_capacity(KEEP_HEAD + 4 + KEEP_TAIL);
        out.push_str(&mobile[..KEEP_HEAD]);
        out.push_str("****");
        out.push_str(&mobile[len - KEEP_TAIL..]);
        return out;
    }
    let head = mobile.chars().take(KEEP_HEAD);
    let tail = mobile.chars().skip(len - KEEP_TAIL);
    head.chain("****".chars()).chain(tail).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nick_examples() {
        assert_eq!(mask_nick("买家昵称"), "买**称");
        assert_eq!(mask_nick("tb12345"), "t**5");
        assert_eq!(mask_nick("abc"), "a**c");
        assert_eq!(mask_nick("张三"), "张*");
        assert_eq!(mask_nick("张"), "*");
        assert_eq!(mask_nick(""), "");
    }

    #[test]
    fn nick_multibyte_and_emoji() {
        assert_eq!(mask_nick("😀😁😂"), "😀**😂");
        assert_eq!(mask_nick("😀x"), "😀*");
        assert_eq!(mask_nick("🐼"), "*");
        assert_eq!(mask_nick("é中文🎉"), "é**🎉");
        // A 4-byte char must not be counted as four characters.
        assert_eq!(mask_nick("a🎉"), "a*");
    }

    #[test]
    fn mobile_examples() {
        // The exact example from the API documentation.
        assert_eq!(mask_mobile("13800000000"), "138****00");
        assert_eq!(mask_mobile("123456"), "123****56");
        assert_eq!(mask_mobile("12345"), "****");
        assert_eq!(mask_mobile("1"), "****");
        assert_eq!(mask_mobile(""), "");
    }

    #[test]
    fn mobile_multibyte() {
        // Full-width digits are 3 bytes each; byte-based slicing would break.
        assert_eq!(mask_mobile("１３８００００００００"), "１３８****００");
        assert_eq!(mask_mobile("📱📱📱📱📱📱"), "📱📱📱****📱📱");
        assert_eq!(mask_mobile("📱📱📱📱📱"), "****");
    }

    /// Chars that may sit in the masked middle, disjoint from the edge
    /// alphabet, so "the middle leaked" is simply "a middle char appears".
    fn middle_char() -> impl Strategy<Value = char> {
        prop_oneof![
            proptest::char::range('0', '9'),
            proptest::char::range('一', '龥'),
            proptest::char::range('😀', '🙏'),
        ]
    }

    fn edge_char() -> impl Strategy<Value = char> {
        proptest::char::range('a', 'z')
    }

    proptest::proptest! {
        #[test]
        fn nick_never_panics_and_has_rule_length(s in any::<String>()) {
            let out = mask_nick(&s);
            let n = s.chars().count();
            let expected = match n { 0 => 0, 1 => 1, 2 => 2, _ => 4 };
            prop_assert_eq!(out.chars().count(), expected);
        }

        #[test]
        fn mobile_never_panics_and_has_rule_length(s in any::<String>()) {
            let out = mask_mobile(&s);
            let n = s.chars().count();
            let expected = match n { 0 => 0, 1..=5 => 4, _ => 9 };
            prop_assert_eq!(out.chars().count(), expected);
        }

        #[test]
        fn nick_hides_middle(
            first in edge_char(),
            middle in proptest::collection::vec(middle_char(), 3..30),
            last in edge_char(),
        ) {
            let input: String = std::iter::once(first).chain(middle.iter().copied()).chain(std::iter::once(last)).collect();
            let out = mask_nick(&input);
            prop_assert!(out.chars().all(|c| !middle.contains(&c)), "{} -> {}", input, out);
            prop_assert_eq!(out, format!("{first}**{last}"));
        }

        #[test]
        fn mobile_hides_middle(
            head in proptest::collection::vec(edge_char(), 3),
            middle in proptest::collection::vec(middle_char(), 0..30),
            tail in proptest::collection::vec(edge_char(), 2),
        ) {
            let input: String = head.iter().chain(&middle).chain(&tail).collect();
            let out = mask_mobile(&input);
            prop_assert!(out.chars().all(|c| !middle.contains(&c)), "{} -> {}", input, out);
            // Length-5 inputs (empty middle) are fully hidden; otherwise the
            // head and tail are kept around exactly four stars.
            if middle.is_empty() {
                prop_assert_eq!(out, "****");
            } else {
                let head: String = head.iter().collect();
                let tail: String = tail.iter().collect();
                prop_assert_eq!(out, format!("{head}****{tail}"));
            }
        }
    }
}
