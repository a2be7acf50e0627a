import protobuf from 'protobufjs/minimal.js';

const { Reader, Writer } = protobuf;

/**
 * Protobuf wire-level access to the few CRI fields we read or change, so that every other byte
 * (fields newer than any proto we could compile in, unknown fields, field order) passes through
 * exactly as kubelet sent it. protobufjs/minimal does the varint and length decoding.
 */

/** One top-level field occurrence: its number, wire type and byte span in the message. */
export interface FieldSpan {
  readonly field: number;
  readonly wireType: number;
  /** Start of the tag. */
  readonly start: number;
  /** End of the whole field. */
  readonly end: number;
  /** The payload of a length-delimited field (wire type 2). */
  readonly value?: Buffer;
}

export class WireError extends Error {
  override readonly name = 'WireError';
}

/** The top-level fields of a message, in order. @throws WireError on a malformed message. */
export function fieldsOf(message: Buffer): FieldSpan[] {
  const reader = Reader.create(message);
  const spans: FieldSpan[] = [];
  try {
    while (reader.pos < reader.len) {
      const start = reader.pos;
      const tag = reader.uint32();
      const field = tag >>> 3;
      const wireType = tag & 7;
      if (field === 0) throw new WireError('field number 0');
      if (wireType === 2) {
        const bytes = reader.bytes();
        spans.push({ field, wireType, start, end: reader.pos, value: Buffer.from(bytes) });
      } else {
        reader.skipType(wireType);
        spans.push({ field, wireType, start, end: reader.pos });
      }
    }
  } catch (err) {
    if (err instanceof WireError) throw err;
    throw new WireError(`malformed protobuf message: ${(err as Error).message}`);
  }
  return spans;
}

/** The last occurrence of a varint field (an enum, a bool), or undefined. @throws WireError */
export function varintField(message: Buffer, field: number): number | undefined {
  let value: number | undefined;
  for (const span of fieldsOf(message)) {
    if (span.field !== field || span.wireType !== 0) continue;
    const reader = Reader.create(message.subarray(span.start, span.end));
    reader.uint32(); // the tag
    value = reader.uint32();
  }
  return value;
}

/** The last occurrence of a string field (protobuf's "last one wins"), or undefined. */
export function stringField(message: Buffer, field: number): string | undefined {
  let value: string | undefined;
  for (const span of fieldsOf(message)) {
    if (span.field === field && span.value) value = span.value.toString('utf8');
  }
  return value;
}

/** All occurrences of an embedded-message field merged (protobuf concatenates them). */
export function messageField(message: Buffer, field: number): Buffer | undefined {
  const parts = fieldsOf(message)
    .filter((s) => s.field === field && s.value)
    .map((s) => s.value as Buffer);
  return parts.length === 0 ? undefined : Buffer.concat(parts);
}

/**
 * `ImageSpec.image` of a CRI message whose field 1 is an ImageSpec (the Pull, Status and Remove
 * requests, and ImageFilter), or undefined. @throws WireError
 */
export function specImage(message: Buffer): string | undefined {
  const spec = messageField(message, 1);
  return spec === undefined ? undefined : stringField(spec, 1);
}

/** `message` with every occurrence of `field` removed and `value` appended as that field. */
export function replaceMessageField(message: Buffer, field: number, value: Buffer): Buffer {
  const kept = fieldsOf(message)
    .filter((s) => s.field !== field)
    .map((s) => message.subarray(s.start, s.end));
  const writer = Writer.create();
  writer.uint32((field << 3) | 2).bytes(value);
  return Buffer.concat([...kept, writer.finish()]);
}

/** Encodes string fields (number -> value) of a message; empty strings are left out. */
export function encodeStrings(fields: ReadonlyArray<readonly [number, string]>): Buffer {
  const writer = Writer.create();
  for (const [field, value] of fields) {
    if (value !== '') writer.uint32((field << 3) | 2).string(value);
  }
  return Buffer.from(writer.finish());
}
