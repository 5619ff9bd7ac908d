// Redact: runs in the publish chain; the stored event (and every reader) never sees the fields.
export function transform(event, ctx) {
  if (!event.payload || typeof event.payload !== "object") return event;
  for (const field of ctx.config.fields) {
    if (field in event.payload) event.payload[field] = ctx.config.mask;
  }
  return event;
}
