import { json, type StandIn, startStandIn } from './server.js';

/**
 * Google STS (`POST /v1/token`, RFC 8693 token exchange) and IAM Credentials
 * (`POST /v1/projects/-/serviceAccounts/<sa>:generateAccessToken`), for workload identity
 * federation (`external_account` credentials). Checks the grant and the subject token.
 */
export async function startGoogleSts(options: {
  subjectToken: string;
  audience: string;
}): Promise<StandIn> {
  return startStandIn((req, res) => {
    if (req.method === 'POST' && req.path === '/v1/token') {
      const form = new URLSearchParams(req.body);
      if (
        form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange' ||
        form.get('subject_token') !== options.subjectToken ||
        form.get('audience') !== options.audience
      ) {
        json(res, 400, {
          error: 'invalid_grant',
          error_description: 'stand-in: wrong grant, subject token or audience',
        });
        return;
      }
      json(res, 200, {
        access_token: 'ya29.federated-sts',
        issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        token_type: 'Bearer',
        expires_in: 3600,
      });
      return;
    }
    const m = /^\/v1\/projects\/-\/serviceAccounts\/([^/:]+):generateAccessToken$/.exec(req.path);
    if (req.method === 'POST' && m) {
      if (req.headers.authorization !== 'Bearer ya29.federated-sts') {
        json(res, 401, {
          error: { code: 401, message: 'stand-in: not the STS token', status: 'UNAUTHENTICATED' },
        });
        return;
      }
      json(res, 200, {
        accessToken: `ya29.impersonated-${decodeURIComponent(m[1] ?? '')}`,
        expireTime: new Date(Date.now() + 3600_000).toISOString(),
      });
      return;
    }
    json(res, 404, { error: 'not found' });
  });
}
