/** A config the proxy cannot run with; the message is one line for the operator. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
