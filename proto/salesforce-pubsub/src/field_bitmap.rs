//! `ChangeEventHeader.changedFields`, `nulledFields` and `diffFields` as the Pub/Sub API sends
//! them: not field names but bitmaps, each a hex string (`"0x650004E0"`). Bit `i` (counted from
//! the least significant bit of the number the hex digits spell) stands for the field at
//! position `i` of the event's Avro schema, where position 0 is `ChangeEventHeader` itself. The
//! first string covers the top-level fields; a compound field (a Contact's `Name`, an address)
//! that changed in part has a string of its own, `"<position>-0x<bitmap>"`, whose bits are
//! positions among the compound record's fields. (Salesforce's Pub/Sub API guide, "Event
//! Deserialization Considerations".)

use apache_avro::schema::RecordSchema;
use apache_avro::Schema;

/// The bitmap string with the bits at `positions` set: `0x` and two upper-case hex digits per
/// byte, most significant first (`0x00` when none).
pub fn encode(positions: &[usize]) -> String {
    let bytes = positions.iter().max().map_or(1, |top| top / 8 + 1);
    let mut bits = vec![0u8; bytes];
    for &position in positions {
        bits[bytes - 1 - position / 8] |= 1 << (position % 8);
    }
    let mut out = String::from("0x");
    for byte in bits {
        out.push_str(&format!("{byte:02X}"));
    }
    out
}

/// The positions a bitmap string (`0x…`) sets, lowest first.
pub fn positions(bitmap: &str) -> Result<Vec<usize>, String> {
    let hex = bitmap
        .strip_prefix("0x")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("field bitmap {bitmap:?} does not start with 0x"))?;
    let mut out = Vec::new();
    for (from_end, digit) in hex.chars().rev().enumerate() {
        let nibble = digit
            .to_digit(16)
            .ok_or_else(|| format!("field bitmap {bitmap:?} is not hexadecimal"))?;
        for bit in 0..4 {
            if nibble & (1 << bit) != 0 {
                out.push(from_end * 4 + bit);
            }
        }
    }
    Ok(out)
}

/// The field names a header's bitmap strings stand for, read against the event's schema:
/// top-level fields by name, the parts of a compound field as `Parent.Part`. A bit past the
/// schema's fields, or a compound string naming a field that is not a record, is an error (the
/// bitmap was not written with this schema).
pub fn field_names(schema: &Schema, bitmaps: &[String]) -> Result<Vec<String>, String> {
    let event = record(schema).ok_or("a change event schema is a record")?;
    let mut names = Vec::new();
    for bitmap in bitmaps {
        match bitmap.split_once('-') {
            None => names.extend(names_in(event, bitmap, None)?),
            Some((parent, nested)) => {
                let position: usize = parent
                    .parse()
                    .map_err(|_| format!("field bitmap {bitmap:?}: bad parent position"))?;
                let field = event
                    .fields
                    .get(position)
                    .ok_or_else(|| format!("field bitmap {bitmap:?}: no field {position}"))?;
                let compound = compound_record(&field.schema).ok_or_else(|| {
                    format!("field bitmap {bitmap:?}: {} is not compound", field.name)
                })?;
                names.extend(names_in(compound, nested, Some(&field.name))?);
            }
        }
    }
    Ok(names)
}

/// The bitmap strings for `names` (top-level names, and `Parent.Part` for a compound field's
/// parts) against `schema`: what a writer of change events puts in the header. A name the
/// schema does not have is an error.
pub fn for_names(schema: &Schema, names: &[String]) -> Result<Vec<String>, String> {
    let event = record(schema).ok_or("a change event schema is a record")?;
    let mut top = Vec::new();
    let mut nested: Vec<(usize, Vec<usize>)> = Vec::new();
    for name in names {
        let unknown = || format!("no field {name} in {}", event.name.name);
        match name.split_once('.') {
            None => top.push(event.lookup.get(name).copied().ok_or_else(unknown)?),
            Some((parent, part)) => {
                let position = event.lookup.get(parent).copied().ok_or_else(unknown)?;
                let compound =
                    compound_record(&event.fields[position].schema).ok_or_else(unknown)?;
                let part = compound.lookup.get(part).copied().ok_or_else(unknown)?;
                match nested.iter_mut().find(|(p, _)| *p == position) {
                    Some((_, parts)) => parts.push(part),
                    None => nested.push((position, vec![part])),
                }
            }
        }
    }
    if top.is_empty() && nested.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = vec![encode(&top)];
    nested.sort_by_key(|(position, _)| *position);
    for (position, parts) in nested {
        out.push(format!("{position}-{}", encode(&parts)));
    }
    Ok(out)
}

fn record(schema: &Schema) -> Option<&RecordSchema> {
    match schema {
        Schema::Record(record) => Some(record),
        _ => None,
    }
}

/// A compound field's record: the field's type is `["null", record]`.
fn compound_record(schema: &Schema) -> Option<&RecordSchema> {
    match schema {
        Schema::Union(union) => union.variants().iter().find_map(record),
        other => record(other),
    }
}

fn names_in(
    record: &RecordSchema,
    bitmap: &str,
    parent: Option<&str>,
) -> Result<Vec<String>, String> {
    positions(bitmap)?
        .into_iter()
        .map(|position| {
            let field = record.fields.get(position).ok_or_else(|| {
                format!(
                    "field bitmap {bitmap:?}: bit {position} is past {}'s {} fields",
                    record.name.name,
                    record.fields.len()
                )
            })?;
            Ok(match parent {
                Some(parent) => format!("{parent}.{}", field.name),
                None => field.name.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change_event::{parse_schema, schema_json, EventField, FieldKind};

    #[test]
    fn bitmaps_read_as_salesforce_documents_them() {
        // The guide's example: 0x650004E0 sets bits 5, 6, 7, 10, 24, 26, 29, 30.
        assert_eq!(
            positions("0x650004E0").unwrap(),
            [5, 6, 7, 10, 24, 26, 29, 30]
        );
        assert_eq!(positions("0x10").unwrap(), [4]);
        assert_eq!(positions("0x06").unwrap(), [1, 2]);
        assert_eq!(positions("0x6").unwrap(), [1, 2]);
        assert_eq!(encode(&[5, 6, 7, 10, 24, 26, 29, 30]), "0x650004E0");
        assert_eq!(encode(&[]), "0x00");
        assert_eq!(encode(&[8]), "0x0100");
        for bad in ["OwnerId", "0x", "0xZZ", "650004E0"] {
            assert!(positions(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_compound_parts_round_trip_through_bitmaps() {
        let fields = vec![
            EventField::compound(
                "Name",
                &[
                    ("Salutation", FieldKind::String),
                    ("FirstName", FieldKind::String),
                    ("LastName", FieldKind::String),
                ],
            ),
            EventField::scalar("Phone", FieldKind::String),
            EventField::scalar("OwnerId", FieldKind::String),
            EventField::scalar("Description", FieldKind::String),
        ];
        let schema = parse_schema(&schema_json("Contact", &fields)).unwrap();
        let names: Vec<String> = ["OwnerId", "Name.FirstName", "Description"]
            .map(String::from)
            .into();
        let bitmaps = for_names(&schema, &names).unwrap();
        // ChangeEventHeader is position 0: Name 1, Phone 2, OwnerId 3, Description 4.
        assert_eq!(bitmaps, ["0x18", "1-0x02"]);
        let mut back = field_names(&schema, &bitmaps).unwrap();
        back.sort();
        assert_eq!(back, ["Description", "Name.FirstName", "OwnerId"]);
        assert!(
            field_names(&schema, &["0x40".into()]).is_err(),
            "bit 6 of 5 fields"
        );
        assert!(
            field_names(&schema, &["2-0x01".into()]).is_err(),
            "Phone is not compound"
        );
        assert!(for_names(&schema, &["Fax".into()]).is_err());
        assert_eq!(for_names(&schema, &[]).unwrap(), Vec::<String>::new());
    }
}
