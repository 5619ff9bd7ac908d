// Webhook shaper: endpoints whose description contains "chat" get a compact message instead
// of the event; every other endpoint gets the event unchanged (return undefined).
export function webhookPayload(event, endpoint) {
  if (!(endpoint.description ?? "").includes("chat")) return undefined;
  const name = event.payload && event.payload.name ? ` "${event.payload.name}"` : "";
  return { text: `${event.type}${name} in project ${event.projectId ?? "-"}`, eventId: event.id };
}
