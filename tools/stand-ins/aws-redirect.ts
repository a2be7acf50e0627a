import { NodeHttpHandler } from '@smithy/node-http-handler';
import type { HttpHandlerOptions } from '@smithy/types';

type Request = Parameters<NodeHttpHandler['handle']>[0];

/**
 * An AWS SDK request handler that connects to loopback stand-ins instead of AWS while leaving
 * what the SDK resolved and signed untouched, the Host header included: a DNS override, so tests
 * see the SDK's real endpoint choice (partition suffix, FIPS, ECR Public's us-east-1). `routes`
 * sends particular host names to other stand-ins (credential providers' inner clients, such as
 * STS for IRSA, get this handler too); every other host goes to `port`.
 */
export class RedirectToStandIn extends NodeHttpHandler {
  readonly #port: number;
  readonly #routes: Readonly<Record<string, number>>;
  /** Host names the SDK asked for, in order. */
  readonly hosts: string[] = [];

  constructor(port: number, routes: Readonly<Record<string, number>> = {}) {
    super();
    this.#port = port;
    this.#routes = routes;
  }

  override handle(
    request: Request,
    options?: HttpHandlerOptions,
  ): ReturnType<NodeHttpHandler['handle']> {
    const original = request.hostname;
    this.hosts.push(original);
    if (!Object.keys(request.headers).some((h) => h.toLowerCase() === 'host')) {
      request.headers.host = original;
    }
    request.protocol = 'http:';
    request.hostname = '127.0.0.1';
    request.port = this.#routes[original] ?? this.#port;
    return super.handle(request, options);
  }
}
