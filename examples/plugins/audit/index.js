// Audit: one `audit.summary` per project event, with a running count kept in ctx.kv.
export function onEvent(event, ctx) {
  const count = (ctx.kv.get("count") ?? 0) + 1;
  ctx.kv.set("count", count);
  const summary = { type: event.type, eventId: event.id, projectId: event.projectId ?? null, count };
  if (ctx.config.includePayloadKeys && event.payload && typeof event.payload === "object") {
    summary.payloadKeys = Object.keys(event.payload).sort();
  }
  ctx.publish("audit.summary", summary);
  ctx.log.debug("audited", event.type, event.id);
}
