import type { ServerResponse } from 'node:http';
import { json, type StandIn, startStandIn } from './server.js';
import { type AwsKey, verifySigV4 } from './sigv4.js';

/**
 * AWS STS `AssumeRoleWithWebIdentity` (IRSA): the web identity token must be the projected
 * service-account token and the role the expected one; hands out `key`. Speaks the query
 * protocol (form in, XML out) and AWS JSON 1.0, whichever the SDK sends.
 */
export async function startSts(options: {
  roleArn: string;
  webIdentityToken: string;
  key: AwsKey;
}): Promise<StandIn> {
  return startStandIn((req, res) => {
    const isJson = String(req.headers['content-type']).startsWith('application/x-amz-json');
    const params = isJson
      ? (JSON.parse(req.body || '{}') as Record<string, string>)
      : Object.fromEntries(new URLSearchParams(req.body));
    const action = isJson
      ? String(req.headers['x-amz-target'] ?? '')
          .split('.')
          .pop()
      : params.Action;
    const ok =
      action === 'AssumeRoleWithWebIdentity' &&
      params.RoleArn === options.roleArn &&
      params.WebIdentityToken === options.webIdentityToken;
    const expiration = new Date(Date.now() + 3600_000);
    if (isJson) {
      if (!ok)
        return json(res, 400, {
          __type: 'InvalidIdentityToken',
          message: 'stand-in: wrong role or token',
        });
      return json(res, 200, {
        Credentials: {
          AccessKeyId: options.key.accessKeyId,
          SecretAccessKey: options.key.secretAccessKey,
          SessionToken: options.key.sessionToken,
          Expiration: expiration.getTime() / 1000,
        },
        AssumedRoleUser: {
          Arn: `${options.roleArn}/session`,
          AssumedRoleId: 'AROASTANDIN:session',
        },
      });
    }
    res.setHeader('content-type', 'text/xml');
    if (!ok) {
      res.writeHead(400);
      res.end(
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>stand-in: wrong role or token</Message></Error><RequestId>r</RequestId></ErrorResponse>',
      );
      return;
    }
    res.writeHead(200);
    res.end(
      [
        '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">',
        '<AssumeRoleWithWebIdentityResult><Credentials>',
        `<AccessKeyId>${options.key.accessKeyId}</AccessKeyId>`,
        `<SecretAccessKey>${options.key.secretAccessKey}</SecretAccessKey>`,
        `<SessionToken>${options.key.sessionToken ?? ''}</SessionToken>`,
        `<Expiration>${expiration.toISOString()}</Expiration>`,
        '</Credentials>',
        `<AssumedRoleUser><Arn>${options.roleArn}/session</Arn><AssumedRoleId>AROASTANDIN:session</AssumedRoleId></AssumedRoleUser>`,
        '</AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>',
        '</AssumeRoleWithWebIdentityResponse>',
      ].join(''),
    );
  });
}

/**
 * AWS STS `GetCallerIdentity` as the proxy's aws-iam plugin meets it: answers only a request
 * whose SigV4 signature verifies with one of `principals`' keys (checked by our own SigV4
 * implementation, not the SDK's), with that principal's ARN; 403 `SignatureDoesNotMatch`
 * otherwise, and 403 `RequestExpired` when x-amz-date is more than 15 minutes off.
 */
export async function startStsCallerIdentity(
  principals: ReadonlyArray<{ key: AwsKey; arn: string; userId?: string }>,
): Promise<StandIn> {
  const error = (res: ServerResponse, code: string, message: string) => {
    res.writeHead(403, { 'content-type': 'text/xml' });
    res.end(
      `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>r</RequestId></ErrorResponse>`,
    );
  };
  return startStandIn((req, res) => {
    const params = new URLSearchParams(req.body);
    if (req.method !== 'POST' || params.get('Action') !== 'GetCallerIdentity')
      return error(res, 'InvalidAction', 'stand-in answers GetCallerIdentity only');
    const check = verifySigV4(
      req,
      principals.map((p) => p.key),
    );
    if (!check.ok) return error(res, 'SignatureDoesNotMatch', check.reason);
    const amzDate = String(req.headers['x-amz-date'] ?? '');
    const iso = amzDate.replace(
      /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/,
      '$1-$2-$3T$4:$5:$6Z',
    );
    const signedAt = Date.parse(iso) || 0;
    if (Math.abs(Date.now() - signedAt) > 15 * 60_000)
      return error(res, 'RequestExpired', 'Request has expired.');
    const accessKeyId = /Credential=([^/]+)\//.exec(String(req.headers.authorization))?.[1];
    const principal = principals.find((p) => p.key.accessKeyId === accessKeyId);
    if (!principal) return error(res, 'InvalidClientTokenId', 'unknown key');
    const account = /::(\d{12}):/.exec(principal.arn)?.[1] ?? '';
    res.writeHead(200, { 'content-type': 'text/xml' });
    res.end(
      `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>${principal.arn}</Arn><UserId>${principal.userId ?? 'AROASTANDIN:i-0123'}</UserId><Account>${account}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
    );
  });
}
