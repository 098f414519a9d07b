/**
 * A listener that cannot start (address unresolvable or busy, an activated socket unfit to serve):
 * the CLI prints it as one line and exits non-zero. Its own module so the listener and socket
 * activation both throw it without importing each other.
 */
export class ListenerError extends Error {
  override name = 'ListenerError';
}
