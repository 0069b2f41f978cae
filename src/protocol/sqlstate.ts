/* SQLSTATE codes the pooler sends itself (PostgreSQL's errcodes.txt names). Never invent one. */

export const enum SqlState {
  ConnectionException = '08000',
  ConnectionFailure = '08006',
  SqlclientUnableToEstablishSqlconnection = '08001',
  ProtocolViolation = '08P01',
  FeatureNotSupported = '0A000',
  InvalidAuthorizationSpecification = '28000',
  InvalidPassword = '28P01',
  InvalidCatalogName = '3D000',
  TooManyConnections = '53300',
  ConfigurationLimitExceeded = '53400',
  QueryCanceled = '57014',
  AdminShutdown = '57P01',
  CannotConnectNow = '57P03',
  IdleInTransactionSessionTimeout = '25P03',
  IdleSessionTimeout = '57P05',
  InternalError = 'XX000',
  ObjectNotInPrerequisiteState = '55000',
  InvalidParameterValue = '22023',
  SyntaxError = '42601',
  InsufficientPrivilege = '42501',
}
