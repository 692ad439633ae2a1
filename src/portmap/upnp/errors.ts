// UPnP control error codes (UDA 1.1 §3.2.2 and the IGD WANIPConnection:1/:2 service
// specifications), with the description a SOAP fault carries. masq's own refusals (a quota, a
// port in use) reach a client through src/errors/codes.ts `upnpErrorOf`.

export const UpnpError = {
  INVALID_ACTION: 401,
  INVALID_ARGS: 402,
  ACTION_FAILED: 501,
  ARGUMENT_VALUE_INVALID: 600,
  ARGUMENT_VALUE_OUT_OF_RANGE: 601,
  STRING_ARGUMENT_TOO_LONG: 605,
  ACTION_NOT_AUTHORIZED: 606,
  SPECIFIED_ARRAY_INDEX_INVALID: 713,
  NO_SUCH_ENTRY_IN_ARRAY: 714,
  WILDCARD_NOT_PERMITTED_IN_SRC_IP: 715,
  WILDCARD_NOT_PERMITTED_IN_EXT_PORT: 716,
  CONFLICT_IN_MAPPING_ENTRY: 718,
  SAME_PORT_VALUES_REQUIRED: 724,
  ONLY_PERMANENT_LEASES_SUPPORTED: 725,
  REMOTE_HOST_ONLY_SUPPORTS_WILDCARD: 726,
  EXTERNAL_PORT_ONLY_SUPPORTS_WILDCARD: 727,
  NO_PORT_MAPS_AVAILABLE: 728,
  CONFLICT_WITH_OTHER_MECHANISMS: 729,
  PORT_MAPPING_NOT_FOUND: 730,
  WILDCARD_NOT_PERMITTED_IN_INT_PORT: 732,
  INCONSISTENT_PARAMETERS: 733,
} as const;

export const UPNP_ERROR_TEXT: Readonly<Record<number, string>> = {
  401: "Invalid Action",
  402: "Invalid Args",
  501: "Action Failed",
  600: "Argument Value Invalid",
  601: "Argument Value Out of Range",
  605: "String Argument Too Long",
  606: "Action not authorized",
  713: "SpecifiedArrayIndexInvalid",
  714: "NoSuchEntryInArray",
  715: "WildCardNotPermittedInSrcIP",
  716: "WildCardNotPermittedInExtPort",
  718: "ConflictInMappingEntry",
  724: "SamePortValuesRequired",
  725: "OnlyPermanentLeasesSupported",
  726: "RemoteHostOnlySupportsWildcard",
  727: "ExternalPortOnlySupportsWildcard",
  728: "NoPortMapsAvailable",
  729: "ConflictWithOtherMechanisms",
  730: "PortMappingNotFound",
  732: "WildCardNotPermittedInIntPort",
  733: "InconsistentParameters",
};

/** A refused action: the UPnP error code, and what happened (for the log). */
export class UpnpFault {
  constructor(
    readonly code: number,
    readonly detail = "",
  ) {}
}
