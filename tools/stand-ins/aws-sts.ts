import { json, type StandIn, startStandIn } from './server.js';
import type { AwsKey } from './sigv4.js';

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
