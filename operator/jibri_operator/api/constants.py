"""Names fixed by the Jibri protocol and by this project's API group."""

from typing import Final

GROUP: Final = "jibri.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

KIND_ENVIRONMENT: Final = "XmppEnvironment"
KIND_POOL: Final = "JibriPool"
KIND_SESSION: Final = "RecordingSession"

PLURAL_ENVIRONMENT: Final = "xmppenvironments"
PLURAL_POOL: Final = "jibripools"
PLURAL_SESSION: Final = "recordingsessions"

FINALIZER: Final = f"{GROUP}/stop-recording"

JIBRI_NS: Final = "http://jitsi.org/protocol/jibri"
HEALTH_NS: Final = "http://jitsi.org/protocol/health"
MUC_USER_NS: Final = "http://jabber.org/protocol/muc#user"
STANZAS_NS: Final = "urn:ietf:params:xml:ns:xmpp-stanzas"
