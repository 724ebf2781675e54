//! `pii`: personal data found by shape, then validated (Luhn, mod-97, octet ranges,
//! `Ipv6Addr`, SSN number ranges) so that most look-alikes are dropped.
//!
//! One regex per set of chosen entities: the candidates of every chosen entity are
//! alternatives of one automaton (one pass over the text whatever the number of
//! entities), compiled on first use and shared by every rule with the same set. ASCII
//! word boundaries and classes only: the lazy DFA then never falls back to a slower
//! engine on non-ASCII text.

use super::{Hit, PiiEntity};
use regex::Regex;
use std::net::Ipv6Addr;
use std::sync::OnceLock;

/// The candidate pattern of each entity, as a named group.
fn pattern(e: PiiEntity) -> &'static str {
    match e {
        // Local part, domain labels, an alphabetic TLD of two or more letters.
        PiiEntity::Email => {
            r"(?P<email>[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?-u:\b))"
        }
        // `+` and a country code, then groups of digits with single separators; or the
        // North American `(555) 123-4567` / `555-123-4567` / `555.123.4567` forms.
        PiiEntity::Phone => {
            r"(?P<phone>\+[1-9][0-9]{0,3}(?:[ .\-]?\(?[0-9]{1,5}\)?){1,6}|(?:\([0-9]{3}\)[ .\-]?|(?-u:\b)[0-9]{3}[.\- ])[0-9]{3}[.\- ][0-9]{4}(?-u:\b))"
        }
        // 13 to 19 digits, optionally grouped by single spaces or dashes.
        PiiEntity::CreditCard => r"(?P<card>(?-u:\b)(?:[0-9][ \-]?){12,18}[0-9](?-u:\b))",
        // Country code, check digits, then the BBAN in groups of four (spaces allowed).
        PiiEntity::Iban => {
            r"(?P<iban>(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?-u:\b))"
        }
        // Dotted quad; hex groups with colons (validated by `Ipv6Addr`).
        PiiEntity::IpAddress => {
            r"(?P<ipv4>(?-u:\b)[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?-u:\b))|(?P<ipv6>(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|[0-9]{1,3}(?:\.[0-9]{1,3}){3})?)"
        }
        PiiEntity::UsSsn => r"(?P<ssn>(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b))",
    }
}

/// The groups of the combined regex, with the entity each stands for.
const GROUPS: [(&str, PiiEntity); 7] = [
    ("email", PiiEntity::Email),
    ("phone", PiiEntity::Phone),
    ("card", PiiEntity::CreditCard),
    ("iban", PiiEntity::Iban),
    ("ipv4", PiiEntity::IpAddress),
    ("ipv6", PiiEntity::IpAddress),
    ("ssn", PiiEntity::UsSsn),
];

/// Bit of an entity in a set.
fn bit(e: PiiEntity) -> usize {
    1 << (e as usize)
}

/// The compiled regex for a set of entities (a bit mask), built on first use.
fn combined(mask: usize) -> Option<&'static Regex> {
    static CACHE: [OnceLock<Option<Regex>>; 64] = [const { OnceLock::new() }; 64];
    CACHE
        .get(mask)?
        .get_or_init(|| {
            // Credit cards before phones: a card grouped in fours would otherwise start
            // as a phone number.
            let order = [
                PiiEntity::Email,
                PiiEntity::Iban,
                PiiEntity::CreditCard,
                PiiEntity::UsSsn,
                PiiEntity::IpAddress,
                PiiEntity::Phone,
            ];
            let alts: Vec<&str> = order
                .iter()
                .filter(|e| mask & bit(**e) != 0)
                .map(|e| pattern(*e))
                .collect();
            if alts.is_empty() {
                return None;
            }
            // A larger lazy-DFA cache than the default: the alternatives' states stay
            // cached on long texts instead of the search falling back to a slower engine.
            regex::RegexBuilder::new(&alts.join("|"))
                .dfa_size_limit(8 << 20)
                .build()
                .ok()
        })
        .as_ref()
}

/// Compiles the regex of a set of entities now (a config load calls it so that the first
/// request does not).
pub(crate) fn warm(entities: &[PiiEntity]) {
    let _ = combined(mask_of(entities));
}

fn mask_of(entities: &[PiiEntity]) -> usize {
    entities.iter().fold(0, |m, e| m | bit(*e))
}

/// Appends the validated matches of the chosen entities.
pub(crate) fn scan(entities: &[PiiEntity], text: &str, out: &mut Vec<Hit>) {
    let mask = mask_of(entities);
    let Some(re) = combined(mask) else {
        return;
    };
    let b = text.as_bytes();
    for caps in re.captures_iter(text) {
        let Some((group, entity)) = GROUPS.iter().find(|(g, _)| caps.name(g).is_some()) else {
            continue;
        };
        let Some(m) = caps.name(group) else {
            continue;
        };
        let (start, end) = (m.start(), m.end());
        let hit = match *group {
            "email" => Some((start, end)),
            "phone" => phone(b, start, end),
            "card" => card(b, start, end),
            "iban" => iban(b, start, end),
            "ipv4" => ipv4(b, start, end),
            "ipv6" => ipv6(text, start, end),
            _ => ssn(b, start, end),
        };
        if let Some((start, end)) = hit {
            out.push(Hit {
                start,
                end,
                kind: entity.name(),
            });
        }
    }
}

fn before(b: &[u8], start: usize) -> Option<u8> {
    start.checked_sub(1).map(|i| b[i])
}

fn after(b: &[u8], end: usize) -> Option<u8> {
    b.get(end).copied()
}

fn digits(s: &[u8]) -> impl Iterator<Item = u32> + '_ {
    s.iter()
        .filter(|c| c.is_ascii_digit())
        .map(|c| u32::from(c - b'0'))
}

/// 7 to 15 digits (E.164), not glued to a longer number or word, trailing separators
/// dropped; a national form has its 10 digits.
fn phone(b: &[u8], start: usize, mut end: usize) -> Option<(usize, usize)> {
    while end > start && !b[end - 1].is_ascii_digit() && b[end - 1] != b')' {
        end -= 1;
    }
    // A number opening with `(` is not glued to what precedes it: the parenthesis parts
    // them (`…4567(555) 123-4567` is two numbers, the same before and after the first is
    // redacted).
    if (b[start] != b'('
        && before(b, start).is_some_and(|c| c.is_ascii_alphanumeric() || c == b'+'))
        || after(b, end).is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    let n = digits(&b[start..end]).count();
    // A dotted `555.123.4567` preceded or followed by `.digit` is part of a version or
    // an address.
    if b[start] != b'+' && (b[start..end].contains(&b'.')) && after(b, end) == Some(b'.') {
        return None;
    }
    (8..=15).contains(&n).then_some((start, end))
}

/// The Luhn checksum of a digit string.
pub(crate) fn luhn(digits: impl DoubleEndedIterator<Item = u32>) -> bool {
    let mut sum = 0;
    for (i, d) in digits.rev().enumerate() {
        sum += if i % 2 == 1 {
            let x = d * 2;
            if x > 9 {
                x - 9
            } else {
                x
            }
        } else {
            d
        };
    }
    sum % 10 == 0
}

/// 13–19 digits, one kind of separator, an issuer's first digit (2–6), Luhn.
fn card(b: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let s = &b[start..end];
    let n = digits(s).count();
    if !(13..=19).contains(&n) || !(b'2'..=b'6').contains(&s[0]) {
        return None;
    }
    let spaces = s.contains(&b' ');
    let dashes = s.contains(&b'-');
    if spaces && dashes {
        return None;
    }
    // Part of a dotted or dashed longer token (`1234-5678-...-1`).
    if matches!(before(b, start), Some(b'-' | b'.' | b'/'))
        || (after(b, end) == Some(b'-') && b.get(end + 1).is_some_and(u8::is_ascii_digit))
    {
        return None;
    }
    luhn(digits(s).collect::<Vec<_>>().into_iter()).then_some((start, end))
}

/// Length of the IBAN of each country (ISO 13616 registry).
const IBAN_LENGTHS: [(&[u8; 2], usize); 76] = [
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TN", 24),
    (b"TR", 26),
];

/// A known country's length (the candidate is cut to it: the regex may have read a
/// following word), then the mod-97 check of ISO 13616.
fn iban(b: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    let cc = &b[start..start + 2];
    let len = IBAN_LENGTHS.iter().find(|(c, _)| &c[..] == cc)?.1;
    let mut chars = Vec::with_capacity(len);
    let mut stop = start;
    for (i, c) in b[start..end].iter().enumerate() {
        if *c == b' ' {
            continue;
        }
        chars.push(*c);
        if chars.len() == len {
            stop = start + i + 1;
            break;
        }
    }
    if chars.len() != len || after(b, stop).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    // Move the first four characters to the end; letters count as 10..35.
    let mut rem: u32 = 0;
    for c in chars[4..].iter().chain(&chars[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return None,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    (rem == 1).then_some((start, stop))
}

/// Four octets of at most 255, not part of a longer dotted run (`1.2.3.4.5`, `v1.2.3.4`).
fn ipv4(b: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    if before(b, start) == Some(b'.')
        || (after(b, end) == Some(b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit))
    {
        return None;
    }
    let s = std::str::from_utf8(&b[start..end]).ok()?;
    s.split('.')
        .all(|o| o.parse::<u16>().is_ok_and(|v| v <= 255) && (o.len() == 1 || !o.starts_with('0')))
        .then_some((start, end))
}

/// A colon-separated run that parses as an IPv6 address, not glued to a word or a longer
/// run, with at least two non-empty groups of which one has three digits or more (so that
/// `a::b` in code is not taken for an address).
fn ipv6(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    if before(b, start).is_some_and(|c| c.is_ascii_alphanumeric() || c == b':' || c == b'.')
        || after(b, end).is_some_and(|c| c.is_ascii_alphanumeric() || c == b':')
    {
        return None;
    }
    let s = &text[start..end];
    let groups: Vec<&str> = s.split(':').filter(|g| !g.is_empty()).collect();
    if groups.len() < 2 || !groups.iter().any(|g| g.len() >= 3) {
        return None;
    }
    s.parse::<Ipv6Addr>().ok().map(|_| (start, end))
}

/// `AAA-GG-SSSS` with an area other than 000, 666 and 9xx, a group other than 00 and a
/// serial other than 0000; not part of a longer dashed number.
fn ssn(b: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    if before(b, start) == Some(b'-')
        || (after(b, end) == Some(b'-') && b.get(end + 1).is_some_and(u8::is_ascii_digit))
    {
        return None;
    }
    let s = &b[start..end];
    let (area, group, serial) = (&s[0..3], &s[4..6], &s[7..11]);
    let bad = area == b"000" || area == b"666" || area[0] == b'9' || group == b"00";
    (!bad && serial != b"0000").then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(entities: &[PiiEntity], text: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        scan(entities, text, &mut out);
        out.iter()
            .map(|h| (h.kind, text[h.start..h.end].to_string()))
            .collect()
    }

    fn kinds(text: &str) -> Vec<&'static str> {
        found(&PiiEntity::ALL, text)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    #[test]
    fn emails() {
        assert_eq!(
            found(
                &[PiiEntity::Email],
                "mail jane.doe+x@mail.example.co.uk now"
            ),
            [("email", "jane.doe+x@mail.example.co.uk".to_string())]
        );
        assert_eq!(kinds("git clone git@github.com:org/repo.git"), ["email"]);
        for miss in [
            "@decorator",
            "user@localhost",
            "npm i pkg@1.2.3",
            "a @ b.com",
        ] {
            assert!(kinds(miss).is_empty(), "{miss}");
        }
    }

    #[test]
    fn phones() {
        for (text, want) in [
            ("call (555) 123-4567 today", "(555) 123-4567"),
            ("call 555-123-4567.", "555-123-4567"),
            ("london +44 20 7946 0958", "+44 20 7946 0958"),
            ("berlin +49 30 1234567", "+49 30 1234567"),
            ("e164 +14155552671", "+14155552671"),
        ] {
            assert_eq!(found(&[PiiEntity::Phone], text), [("phone", want.into())]);
        }
        assert_eq!(
            found(&[PiiEntity::Phone], "(555) 123-4567(555) 123-4567"),
            [
                ("phone", "(555) 123-4567".into()),
                ("phone", "(555) 123-4567".into())
            ]
        );
        for miss in [
            "order 12345678901",
            "on 2024-01-15",
            "version 1.2.3",
            "ratio 555.123.4567.8",
            "+1",
            "x+44 20",
        ] {
            assert!(found(&[PiiEntity::Phone], miss).is_empty(), "{miss}");
        }
    }

    #[test]
    fn cards_need_luhn() {
        assert_eq!(kinds("card 4111 1111 1111 1111 exp"), ["credit_card"]);
        assert_eq!(kinds("card 5500-0000-0000-0004"), ["credit_card"]);
        assert_eq!(kinds("amex 378282246310005"), ["credit_card"]);
        assert!(kinds("card 4111 1111 1111 1112").is_empty());
        assert!(kinds("id 1234567890123456").is_empty());
        assert!(kinds("4111 1111-1111 1111").is_empty());
    }

    #[test]
    fn ibans_need_their_checksum() {
        assert_eq!(kinds("pay DE89 3704 0044 0532 0130 00 THEN"), ["iban"]);
        assert_eq!(kinds("GB82WEST12345698765432"), ["iban"]);
        assert!(kinds("pay DE89 3704 0044 0532 0130 01").is_empty());
        assert!(kinds("ZZ89 3704 0044 0532 0130 00").is_empty());
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(kinds("from 192.168.1.20 to"), ["ip_address"]);
        assert_eq!(kinds("host 2001:db8::8a2e:370:7334 up"), ["ip_address"]);
        assert_eq!(kinds("link fe80::1"), ["ip_address"]);
        for miss in [
            "version 10.0.19041.1",
            "1.2.3.4.5",
            "v1.2.3.4",
            "999.1.1.1",
            "std::fs::read",
            "at 12:30:45",
            "mac 00:1a:2b:3c:4d:5e",
            "a::b",
        ] {
            assert!(kinds(miss).is_empty(), "{miss}");
        }
    }

    #[test]
    fn ssns() {
        assert_eq!(kinds("ssn 123-45-6789"), ["us_ssn"]);
        for miss in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(kinds(miss).is_empty(), "{miss}");
        }
    }

    #[test]
    fn only_chosen_entities_run() {
        assert!(found(&[PiiEntity::Phone], "a@b.com 123-45-6789").is_empty());
        assert!(found(&[], "a@b.com").is_empty());
    }
}
