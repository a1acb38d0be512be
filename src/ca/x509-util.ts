// Small certificate helpers shared by the session CA, the doctor's throwaway CA and the tests.
// Importing this module loads @peculiar/x509 and points it at Node's WebCrypto.
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// @peculiar/x509 signs with whatever WebCrypto it is given: Node's, i.e. native keys.
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { EC_KEYGEN, EC_SIGN, serialNumber, toPem } from './cert-util.js';
