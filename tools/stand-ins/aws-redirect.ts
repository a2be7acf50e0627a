import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { HttpHandlerOptions } from '@smithy/types';

type Request = Parameters<NodeHttpHandler['handle']>[0];

/**
 * An AWS SDK request handler that sends every request to a loopback stand-in while leaving
 * what the SDK resolved and signed untouched, the Host header included: like a DNS override,
 * so tests see the real endpoint choice (partition suffix, FIPS, ECR Public's us-east-1).
 */
export class RedirectToStandIn extends NodeHttpHandler {
  readonly #port: number;

  constructor(port: number) {
    super();
    this.#port = port;
  }

  override handle(
    request: Request,
    options?: HttpHandlerOptions,
  ): ReturnType<NodeHttpHandler['handle']> {
    request.headers.host ??= request.hostname;
    request.protocol = 'http:';
    request.hostname = '127.0.0.1';
    request.port = this.#port;
    return super.handle(request, options);
  }
}
