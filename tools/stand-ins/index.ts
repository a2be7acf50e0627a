export type { GceMetadataOptions } from './gce-metadata.js';
export { startGceMetadata } from './gce-metadata.js';
export { startGoogleSts } from './google-sts.js';
export type { Handler, Recorded, StandIn } from './server.js';
export { json, startStandIn, unsignedJwt } from './server.js';
