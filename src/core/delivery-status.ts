/**
 * Delivery-status words shared by the event store (core/events.ts) and the JSON presenters (cli/json.ts), on
 * their own so that commands printing a tenant or provider do not load the event store (issue 15 start-up).
 */

/** Delivery statuses of a message, in switchboard's words (a subset of the webhook `EventType`). */
export const DELIVERY_STATUSES = ['accepted', 'deferred', 'delivered', 'bounced', 'dropped', 'undelivered', 'failed', 'opened', 'clicked', 'read', 'complained', 'unsubscribed'] as const;
/** One of {@link DELIVERY_STATUSES}. */
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/**
 * The source of one-click unsubscribe events and suppressions (no provider config sent them): the `provider` of
 * their events, the `source` of their suppressions.
 */
export const UNSUBSCRIBE_LINK = 'unsubscribe-link';
