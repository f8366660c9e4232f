// Umbrella header of libshmbus.
#pragma once
#include "shmbus/archive.h"
#include "shmbus/client.h"
#include "shmbus/headers.h"
#include "shmbus/idempotent.h"
#include "shmbus/names.h"
#include "shmbus/pattern.h"
#include "shmbus/publisher.h"
#include "shmbus/result.h"
#include "shmbus/statistics.h"
#include "shmbus/subscriber.h"
#include "shmbus/topic.h"
#include "shmbus/wait_set.h"
