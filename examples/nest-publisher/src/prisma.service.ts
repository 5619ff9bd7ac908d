/**
 * The application's database through Prisma 7 (the client generated from `prisma/schema.prisma`
 * into `src/generated/prisma`, on `@prisma/adapter-pg`). Provided only when `DATABASE_URL` is set.
 */
import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from './generated/prisma/client.js';

@Injectable()
export class PrismaService extends PrismaClient implements OnModuleDestroy {
  constructor() {
    super({ adapter: new PrismaPg({ connectionString: process.env.DATABASE_URL }) });
  }

  async onModuleDestroy(): Promise<void> {
    await this.$disconnect();
  }
}
