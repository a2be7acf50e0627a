import type { ServerResponse } from 'node:http';
import { type StandIn, startStandIn } from './server.js';
import type { AwsKey } from './sigv4.js';
import { verifySigV4 } from './sigv4.js';

export type EcrFault =
  | 'throttle'
  | 'denied'
  | 'malformed'
  | 'expired'
  | 'empty'
  | 'server-error'
  | 'not-base64';

export interface EcrCall {
  readonly host: string;
  readonly target: string;
  readonly region: string;
  readonly service: string;
  readonly accessKeyId: string;
  readonly body: unknown;
}

export interface EcrStandIn extends StandIn {
  /** Accepted, correctly signed calls. */
  readonly calls: EcrCall[];
  /** Make the next calls fail this way (undefined: answer normally). */
  fault: EcrFault | undefined;
}

const PRIVATE_TARGET = 'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken';
const PUBLIC_TARGET = 'SpencerFrontendService.GetAuthorizationToken';

/**
 * ECR and ECR Public `GetAuthorizationToken` over the JSON 1.1 protocol. Every request must be
 * SigV4-signed by one of `keys` for the service the target belongs to (`ecr`, `ecr-public`);
 * the token handed out is base64 `AWS:<password>` and expires `lifetimeSeconds` from now.
 */
export async function startEcr(options: {
  keys: readonly AwsKey[];
  password?: (n: number) => string;
  lifetimeSeconds?: number;
}): Promise<EcrStandIn> {
  const calls: EcrCall[] = [];
  const state: { fault: EcrFault | undefined } = { fault: undefined };
  const standIn = await startStandIn((req, res) => {
    const target = String(req.headers['x-amz-target'] ?? '');
    const isPublic = target === PUBLIC_TARGET;
    if (req.method !== 'POST' || req.path !== '/' || (target !== PRIVATE_TARGET && !isPublic)) {
      return awsError(res, 400, 'UnknownOperationException', `unknown operation ${target}`);
    }
    if (req.headers['content-type'] !== 'application/x-amz-json-1.1') {
      return awsError(res, 400, 'SerializationException', 'expected application/x-amz-json-1.1');
    }
    const signed = verifySigV4(req, options.keys);
    if (!signed.ok) return awsError(res, 403, 'InvalidSignatureException', signed.reason);
    const service = isPublic ? 'ecr-public' : 'ecr';
    if (signed.service !== service) {
      return awsError(
        res,
        403,
        'InvalidSignatureException',
        `signed for ${signed.service}, not ${service}`,
      );
    }
    calls.push({
      host: String(req.headers.host),
      target,
      region: signed.region,
      service: signed.service,
      accessKeyId: signed.accessKeyId,
      body: JSON.parse(req.body || '{}'),
    });
    switch (state.fault) {
      case 'throttle':
        return awsError(res, 400, 'ThrottlingException', 'Rate exceeded');
      case 'denied':
        return awsError(
          res,
          400,
          'AccessDeniedException',
          'User is not authorized to perform: ecr:GetAuthorizationToken',
        );
      case 'server-error':
        return awsError(res, 500, 'ServerException', 'stand-in failure');
      case 'malformed':
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
        res.end('{"authorizationData": [ {"authorizationToken": ');
        return;
    }
    const n = calls.length;
    const password = options.password?.(n) ?? `ecr-password-${n}`;
    const token =
      state.fault === 'not-base64'
        ? '***not base64***'
        : Buffer.from(`AWS:${password}`).toString('base64');
    const lifetime = state.fault === 'expired' ? -60 : (options.lifetimeSeconds ?? 43200);
    const expiresAt = Date.now() / 1000 + lifetime;
    const data = {
      authorizationToken: token,
      expiresAt,
      proxyEndpoint: `https://${String(req.headers.host)}`,
    };
    const body = isPublic
      ? { authorizationData: { authorizationToken: token, expiresAt } }
      : { authorizationData: state.fault === 'empty' ? [] : [data] };
    const text = JSON.stringify(body);
    res.writeHead(200, {
      'content-type': 'application/x-amz-json-1.1',
      'x-amzn-requestid': `req-${n}`,
    });
    res.end(text);
  });
  return Object.defineProperties(standIn, {
    calls: { value: calls },
    fault: {
      get: () => state.fault,
      set: (f: EcrFault | undefined) => {
        state.fault = f;
      },
    },
  }) as EcrStandIn;
}

function awsError(res: ServerResponse, status: number, type: string, message: string): void {
  const text = JSON.stringify({ __type: type, message });
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': type });
  res.end(text);
}
